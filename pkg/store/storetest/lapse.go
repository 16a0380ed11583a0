package storetest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// lapseCases are the cases of the lapsed mark (migration 0008): listings by
// status stay exact whatever is marked, by whichever instance, at whatever
// instant; marking is idempotent and counts each row once, even when two
// instances mark at once; a listing by status marks a backlog.
var lapseCases = []struct {
	name string
	run  func(*testing.T, NewStore)
}{
	{"StatusListingsWhateverIsMarked", testStatusListingsWhateverIsMarked},
	{"ExpiredPagesAsTimePasses", testExpiredPagesAsTimePasses},
	{"MarkExpired", testMarkExpired},
	{"ListingMarksBacklog", testListingMarksBacklog},
}

// wantStatus is the serials of f.certs with status at now, in listing
// order.
func (f *registryFixture) wantStatus(status string, now time.Time) []string {
	var want []string
	for _, c := range f.certs {
		if statusAt(c, now) == status {
			want = append(want, c.Serial)
		}
	}
	return want
}

func testStatusListingsWhateverIsMarked(t *testing.T, newStore NewStore) {
	f := newRegistryFixture(t, newStore, 150)
	ctx := context.Background()
	other := f.another()
	// The instants listed at: before most expiries, the fixture's now,
	// after the grace of generation 2 and after every expiry.
	nows := []time.Time{f.now.Add(-500 * time.Hour), f.now, T0.Add(2000 * time.Hour), f.now.Add(1000 * time.Hour)}
	// Marks accumulate, each stage made by another instance at an instant
	// of its own (a marker whose clock runs ahead marks rows that a
	// listing at an earlier instant still sees valid).
	stages := []struct {
		name string
		at   time.Time
	}{
		{"nothing marked", time.Time{}},
		{"marked long before", f.now.Add(-700 * time.Hour)},
		{"marked at now", f.now},
		{"marked by a clock far ahead", f.now.Add(1200 * time.Hour)},
	}
	for _, st := range stages {
		if !st.at.IsZero() {
			if _, err := other.MarkExpired(ctx, "c", st.at); err != nil {
				t.Fatal(err)
			}
		}
		for _, now := range nows {
			for _, status := range []string{store.StatusValid, store.StatusExpired, store.StatusRevoked} {
				want := f.wantStatus(status, now)
				for _, limit := range []int{3, 1000} {
					got, _ := f.pages(t, store.CertificateQuery{Cluster: "c", Status: status, Now: now, Limit: limit})
					if !slices.Equal(serials(got), want) {
						t.Fatalf("%s: %s at %v, limit %d: got %d entries %v\nwant %d %v",
							st.name, status, now, limit, len(got), serials(got), len(want), want)
					}
				}
			}
		}
	}
}

func testExpiredPagesAsTimePasses(t *testing.T, newStore NewStore) {
	f := newRegistryFixture(t, newStore, 150)
	ctx := context.Background()
	other := f.another()
	// The fixture's certificates expire at f.now-1m (every fifth) and at
	// f.now+i hours: paging status=expired from f.now while time passes
	// 20 hours a page, certificates expire between pages, and another
	// instance marks them before some pages.
	now := f.now
	q := store.CertificateQuery{Cluster: "c", Status: store.StatusExpired, Limit: 4}
	seen := map[string]bool{}
	for page := 0; ; page++ {
		q.Now = now
		got, err := f.d.Certificates(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		// Exactly the next entries expired at this page's instant.
		var want []string
		for _, c := range f.certs {
			if statusAt(c, now) != store.StatusExpired {
				continue
			}
			if q.After != nil && (c.IssuedAt.After(q.After.IssuedAt) ||
				c.IssuedAt.Equal(q.After.IssuedAt) && c.Serial >= q.After.Serial) {
				continue
			}
			if len(want) < q.Limit {
				want = append(want, c.Serial)
			}
		}
		if !slices.Equal(serials(got), want) {
			t.Fatalf("page %d at %v: got %v, want %v", page, now, serials(got), want)
		}
		for _, c := range got {
			if seen[c.Serial] {
				t.Fatalf("page %d: %s listed twice", page, c.Serial)
			}
			seen[c.Serial] = true
		}
		if len(got) < q.Limit {
			break
		}
		last := got[len(got)-1]
		q.After = &store.CertificateKey{IssuedAt: last.IssuedAt, Serial: last.Serial}
		now = now.Add(20 * time.Hour)
		if page%2 == 0 {
			if _, err := other.MarkExpired(ctx, "c", now); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(seen) == 0 {
		t.Fatal("no page listed anything")
	}
}

func testMarkExpired(t *testing.T, newStore NewStore) {
	f := newRegistryFixture(t, newStore, 150)
	ctx := context.Background()
	// The never revoked, expired at f.now: what a marking counts.
	want := 0
	for _, c := range f.certs {
		if c.RevokedAt.IsZero() && !c.NotAfter.After(f.now) {
			want++
		}
	}
	if want == 0 {
		t.Fatal("fixture has no never-revoked expired certificate")
	}
	if _, err := f.d.MarkExpired(ctx, "c", time.Time{}); err == nil {
		t.Fatal("marking at the zero instant: no error")
	}
	// Two instances at once: each row is counted by one of them.
	dbs := []Store{f.d, f.another()}
	counts := make([]int, len(dbs))
	errs := make([]error, len(dbs))
	var wg sync.WaitGroup
	for i, d := range dbs {
		wg.Go(func() { counts[i], errs[i] = d.MarkExpired(ctx, "c", f.now) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if counts[0]+counts[1] != want {
		t.Fatalf("two instances marked %d and %d, want %d in all", counts[0], counts[1], want)
	}
	if n, err := f.d.MarkExpired(ctx, "c", f.now); err != nil || n != 0 {
		t.Fatalf("marking again = %d, %v; want 0", n, err)
	}
	// Another cluster's rows are its own.
	if n, err := f.d.MarkExpired(ctx, "other", f.now); err != nil || n != 3 {
		t.Fatalf("marking cluster other = %d, %v; want its 3", n, err)
	}
}

func testListingMarksBacklog(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	CreateCluster(t, d, "c")
	n := store.LapseBacklog + 10
	for i := range n {
		if err := d.RecordCertificate(ctx, Cert("c", 1, i)); err != nil {
			t.Fatal(err)
		}
	}
	// Every certificate lives a day from its issue; a year later all have
	// expired, and none is marked yet.
	now := T0.AddDate(1, 0, 0)
	for _, status := range []string{store.StatusValid, store.StatusExpired} {
		got, err := d.Certificates(ctx, store.CertificateQuery{Cluster: "c", Status: status, Now: now, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{store.StatusValid: 0, store.StatusExpired: 10}[status]; len(got) != want {
			t.Fatalf("%s: %d entries, want %d", status, len(got), want)
		}
		if status == store.StatusValid {
			// The first listing by status marked the backlog.
			if m, err := d.MarkExpired(ctx, "c", now); err != nil || m != 0 {
				t.Fatalf("after a listing, marking = %d, %v; want 0 (the listing marked %d)", m, err, n)
			}
		}
	}
	// Below the backlog, a listing leaves the marking to the next.
	later := now.AddDate(0, 0, 1)
	if err := d.RecordCertificate(ctx, Cert("c", 1, n)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Certificates(ctx, store.CertificateQuery{Cluster: "c", Status: store.StatusExpired, Now: later, Limit: 10}); err != nil {
		t.Fatal(err)
	}
	if m, err := d.MarkExpired(ctx, "c", later); err != nil || m != 1 {
		t.Fatalf("marking one certificate below the backlog = %d, %v; want 1", m, err)
	}
}

// BacklogListings checks list, a store's listing as it runs while a large
// backlog of expired certificates is not marked yet (the listing then walks
// the unmarked expired in listing order instead of sorting them), on a
// registry part of whose expired certificates is marked: every page by
// status, at several instants, is exact. A store's own tests call it with
// its internal listing, which the contract's cases cannot reach (a backlog
// is large only when marking it takes longer than store.LapseBudget).
func BacklogListings(t *testing.T, newStore NewStore, list func(d Store, q store.CertificateQuery) ([]store.IssuedCertificate, error)) {
	t.Helper()
	f := newRegistryFixture(t, newStore, 150)
	if _, err := f.d.MarkExpired(context.Background(), "c", f.now.Add(-700*time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, now := range []time.Time{f.now.Add(-800 * time.Hour), f.now, f.now.Add(1000 * time.Hour)} {
		for _, status := range []string{store.StatusValid, store.StatusExpired} {
			want := f.wantStatus(status, now)
			for _, limit := range []int{3, 1000} {
				got, _ := f.pagesOf(t, store.CertificateQuery{Cluster: "c", Status: status, Now: now, Limit: limit},
					func(q store.CertificateQuery) ([]store.IssuedCertificate, error) { return list(f.d, q) })
				if !slices.Equal(serials(got), want) {
					t.Fatalf("%s at %v, limit %d: got %d entries %v\nwant %d %v", status, now, limit, len(got), serials(got), len(want), want)
				}
			}
		}
	}
}
