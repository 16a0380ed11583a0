package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// registryFixture is a store holding cluster "c" with three generations
// (1 and 2 retired, 2 still trusted for an hour after `now`) and n
// certificates of varied users, generations and validity, plus cluster
// "other" with a few certificates that no query of "c" may return.
type registryFixture struct {
	d Store
	// another opens a second handle on the same database.
	another func() Store
	now     time.Time
	certs   []store.IssuedCertificate // as stored, in the order recorded
}

func newRegistryFixture(t *testing.T, newStore NewStore, n int) *registryFixture {
	t.Helper()
	ctx := context.Background()
	d, another := newStore(t)
	CreateCluster(t, d, "c")
	CreateCluster(t, d, "other")
	f := &registryFixture{d: d, another: another, now: T0.Add(1000 * time.Hour)}
	record := func(ic store.IssuedCertificate) {
		t.Helper()
		if err := d.RecordCertificate(ctx, ic); err != nil {
			t.Fatal(err)
		}
	}
	gen := 1
	for i := range n {
		if i == n/3 || i == 2*n/3 {
			// Generation 1 is revoked long before now, generation 2
			// only an hour after now.
			until := T0.Add(time.Hour)
			if gen == 2 {
				until = f.now.Add(time.Hour)
			}
			if err := d.Rekey(ctx, "c", gen, Generation("c", gen+1), T0, until); err != nil {
				t.Fatal(err)
			}
			gen++
		}
		ic := Cert("c", gen, i)
		// Every third pair shares its issue time, so that the serial
		// must break the tie.
		ic.IssuedAt = T0.Add(time.Duration(i/2) * time.Minute)
		ic.User = fmt.Sprintf("user%d", i%4)
		if i%5 == 0 {
			ic.NotAfter = f.now.Add(-time.Minute) // expired by now
		} else {
			ic.NotAfter = f.now.Add(time.Duration(i) * time.Hour)
		}
		record(ic)
	}
	for i := range 3 {
		ic := Cert("other", 1, i)
		ic.User = "user0"
		record(ic)
	}
	// Read back what was stored (revocation times included).
	all, err := d.Certificates(ctx, store.CertificateQuery{Cluster: "c", Limit: n + 1})
	if err != nil || len(all) != n {
		t.Fatalf("stored %d certificates (%v), want %d", len(all), err, n)
	}
	f.certs = all
	return f
}

// statusAt is the status the listing shows for c at now.
func statusAt(c store.IssuedCertificate, now time.Time) string {
	switch {
	case !c.RevokedAt.IsZero() && !c.RevokedAt.After(now):
		return store.StatusRevoked
	case !c.NotAfter.After(now):
		return store.StatusExpired
	}
	return store.StatusValid
}

// page reads every page of q with q.Limit entries each, checking that each
// page but the last is full, and returns the entries in order.
func (f *registryFixture) pages(t *testing.T, q store.CertificateQuery) ([]store.IssuedCertificate, int) {
	t.Helper()
	return f.pagesOf(t, q, func(q store.CertificateQuery) ([]store.IssuedCertificate, error) {
		return f.d.Certificates(context.Background(), q)
	})
}

// pagesOf is pages, each page read by list.
func (f *registryFixture) pagesOf(t *testing.T, q store.CertificateQuery, list func(store.CertificateQuery) ([]store.IssuedCertificate, error)) ([]store.IssuedCertificate, int) {
	t.Helper()
	var out []store.IssuedCertificate
	pages := 0
	for {
		got, err := list(q)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(got) > q.Limit {
			t.Fatalf("page of %d entries, limit %d", len(got), q.Limit)
		}
		out = append(out, got...)
		if len(got) < q.Limit {
			return out, pages
		}
		last := got[len(got)-1]
		q.After = &store.CertificateKey{IssuedAt: last.IssuedAt, Serial: last.Serial}
		if pages > 10000 {
			t.Fatal("paging does not end")
		}
	}
}

func testCertificatesPaging(t *testing.T, newStore NewStore) {
	const n = 250
	f := newRegistryFixture(t, newStore, n)

	t.Run("the whole registry comes back newest first, by issue time then serial", func(t *testing.T) {
		want := slices.Clone(f.certs)
		slices.SortFunc(want, func(a, b store.IssuedCertificate) int {
			if c := b.IssuedAt.Compare(a.IssuedAt); c != 0 {
				return c
			}
			return strings.Compare(b.Serial, a.Serial)
		})
		if !slices.EqualFunc(f.certs, want, func(a, b store.IssuedCertificate) bool { return a.Serial == b.Serial }) {
			t.Fatalf("order = %v", serials(f.certs))
		}
	})

	for _, limit := range []int{1, 2, 7, 100, n - 1, n, n + 1} {
		t.Run(fmt.Sprintf("pages of %d reach every entry exactly once, in order", limit), func(t *testing.T) {
			got, _ := f.pages(t, store.CertificateQuery{Cluster: "c", Limit: limit})
			if !slices.Equal(serials(got), serials(f.certs)) {
				t.Fatalf("paged %d entries, want %d in listing order", len(got), len(f.certs))
			}
		})
	}

	t.Run("entries recorded between pages neither shift nor repeat the older ones", func(t *testing.T) {
		ctx := context.Background()
		q := store.CertificateQuery{Cluster: "c", Limit: 10}
		var seen []store.IssuedCertificate
		for i := 0; ; i++ {
			got, err := f.d.Certificates(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			seen = append(seen, got...)
			if len(got) < q.Limit {
				break
			}
			// A sign lands between every two pages, newer than all.
			ic := Cert("c", 3, 100000+i)
			ic.IssuedAt = f.now.Add(time.Duration(i) * time.Second)
			if err := f.d.RecordCertificate(ctx, ic); err != nil {
				t.Fatal(err)
			}
			last := got[len(got)-1]
			q.After = &store.CertificateKey{IssuedAt: last.IssuedAt, Serial: last.Serial}
		}
		if !slices.Equal(serials(seen), serials(f.certs)) {
			t.Fatalf("paged %d entries under concurrent inserts, want the %d that existed", len(seen), len(f.certs))
		}
	})
}

func testCertificatesFilters(t *testing.T, newStore NewStore) {
	f := newRegistryFixture(t, newStore, 120)
	// Every status occurs, or the filter tests prove nothing.
	for _, s := range []string{store.StatusValid, store.StatusRevoked, store.StatusExpired} {
		if !slices.ContainsFunc(f.certs, func(c store.IssuedCertificate) bool { return statusAt(c, f.now) == s }) {
			t.Fatalf("fixture has no %s certificate", s)
		}
	}
	target := f.certs[len(f.certs)-7]
	tests := []struct {
		name  string
		q     store.CertificateQuery
		match func(store.IssuedCertificate) bool
	}{
		{"by user", store.CertificateQuery{User: "user2"},
			func(c store.IssuedCertificate) bool { return c.User == "user2" }},
		{"by serial", store.CertificateQuery{Serial: target.Serial},
			func(c store.IssuedCertificate) bool { return c.Serial == target.Serial }},
		{"by an unknown serial", store.CertificateQuery{Serial: "ffff"},
			func(store.IssuedCertificate) bool { return false }},
		{"by generation", store.CertificateQuery{Generation: 2},
			func(c store.IssuedCertificate) bool { return c.Generation == 2 }},
		{"valid", store.CertificateQuery{Status: store.StatusValid},
			func(c store.IssuedCertificate) bool { return statusAt(c, f.now) == store.StatusValid }},
		{"revoked", store.CertificateQuery{Status: store.StatusRevoked},
			func(c store.IssuedCertificate) bool { return statusAt(c, f.now) == store.StatusRevoked }},
		{"expired", store.CertificateQuery{Status: store.StatusExpired},
			func(c store.IssuedCertificate) bool { return statusAt(c, f.now) == store.StatusExpired }},
		{"valid again once the grace of generation 2 is over",
			store.CertificateQuery{Status: store.StatusValid, Now: T0.Add(2000 * time.Hour)},
			func(c store.IssuedCertificate) bool { return statusAt(c, T0.Add(2000*time.Hour)) == store.StatusValid }},
		{"every filter at once", store.CertificateQuery{User: "user1", Generation: 3, Status: store.StatusValid},
			func(c store.IssuedCertificate) bool {
				return c.User == "user1" && c.Generation == 3 && statusAt(c, f.now) == store.StatusValid
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.q
			q.Cluster = "c"
			if q.Now.IsZero() {
				q.Now = f.now
			}
			var want []string
			for _, c := range f.certs {
				if tt.match(c) {
					want = append(want, c.Serial)
				}
			}
			for _, limit := range []int{3, 1000} {
				q.Limit = limit
				got, _ := f.pages(t, q)
				if !slices.Equal(serials(got), want) {
					t.Fatalf("limit %d: got %d entries %v\nwant %d %v", limit, len(got), serials(got), len(want), want)
				}
			}
		})
	}
}

func testCertificatesQueryErrors(t *testing.T, newStore NewStore) {
	d, _ := newStore(t)
	CreateCluster(t, d, "c")
	tests := []struct {
		name string
		q    store.CertificateQuery
	}{
		{"no limit", store.CertificateQuery{Cluster: "c"}},
		{"a negative limit", store.CertificateQuery{Cluster: "c", Limit: -1}},
		{"no cluster", store.CertificateQuery{Limit: 1}},
		{"an unknown status", store.CertificateQuery{Cluster: "c", Limit: 1, Status: "lost", Now: T0}},
		{"a status without an instant", store.CertificateQuery{Cluster: "c", Limit: 1, Status: store.StatusValid}},
		{"a position without a serial", store.CertificateQuery{Cluster: "c", Limit: 1, After: &store.CertificateKey{IssuedAt: T0}}},
		{"a position without a time", store.CertificateQuery{Cluster: "c", Limit: 1, After: &store.CertificateKey{Serial: "01"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			if got, err := d.Certificates(context.Background(), tt.q); err == nil {
				t.Fatalf("Certificates = %v, want an error", got)
			}
		})
	}
	t.Run("a certificate without an issue time is refused", func(t *testing.T) {
		ic := Cert("c", 1, 1)
		ic.IssuedAt = time.Time{}
		if err := d.RecordCertificate(context.Background(), ic); err == nil {
			t.Fatal("recorded a certificate that paging could never reach")
		}
	})
}

func testActiveCAAndTrustedGenerations(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	CreateCluster(t, d, "c")
	// Generations 1–3 retired without grace, 4 with an hour of grace,
	// 5 active.
	for g := 1; g <= 4; g++ {
		until := T0
		if g == 4 {
			until = T0.Add(time.Hour)
		}
		if err := d.Rekey(ctx, "c", g, Generation("c", g+1), T0, until); err != nil {
			t.Fatal(err)
		}
	}
	c, active, err := d.ActiveCA(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	want := Generation("c", 5)
	if c.Generation != 5 || c.Project != "proj-c" || active.Generation != 5 || active.KeyRef != want.KeyRef ||
		string(active.CertificateDER) != string(want.CertificateDER) || !active.NotAfter.Equal(want.NotAfter) {
		t.Fatalf("ActiveCA = %+v, %+v", c, active)
	}
	if _, _, err := d.ActiveCA(ctx, "nope"); err == nil {
		t.Fatal("ActiveCA of a missing cluster succeeded")
	}
	tests := []struct {
		name string
		now  time.Time
		want []int
	}{
		{"within the grace period", T0.Add(time.Minute), []int{5, 4}},
		{"after the grace period", T0.Add(2 * time.Hour), []int{5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gens, err := d.TrustedGenerations(ctx, "c", 5, tt.now)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, g := range gens {
				got = append(got, g.Generation)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("TrustedGenerations = %v, want %v", got, tt.want)
			}
		})
	}
}
