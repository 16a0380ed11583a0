package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

func testClusterRoundTrip(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	c, g := Cluster("prod"), Generation("prod", 1)
	if err := d.CreateCluster(ctx, c, g); err != nil {
		t.Fatal(err)
	}

	got, err := d.Cluster(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	want := c
	want.CreatedAt = utc(c.CreatedAt)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Cluster = %+v\nwant      %+v", got, want)
	}
	if got.CreatedAt.Location() != time.UTC {
		t.Fatalf("CreatedAt in %v, want UTC", got.CreatedAt.Location())
	}

	gens, err := d.Generations(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	wantGen := g
	wantGen.NotBefore, wantGen.NotAfter, wantGen.CreatedAt = utc(g.NotBefore), utc(g.NotAfter), utc(g.CreatedAt)
	if len(gens) != 1 || !reflect.DeepEqual(gens[0], wantGen) {
		t.Fatalf("Generations = %+v\nwant          [%+v]", gens, wantGen)
	}
}

func testClusterErrors(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	CreateCluster(t, d, "taken")

	otherRef := Generation("taken", 1)
	otherRef.KeyRef = "ca/other/1"
	reusedRef := Generation("fresh", 1)
	reusedRef.KeyRef = Generation("taken", 1).KeyRef
	mismatched := Cluster("odd")
	mismatched.Generation = 2

	tests := []struct {
		name  string
		c     store.Cluster
		first store.CAGeneration
		want  error
	}{
		{"an existing cluster is a conflict", Cluster("taken"), otherRef, api.ErrConflict},
		{"a key ref already used is a conflict", Cluster("fresh"), reusedRef, api.ErrConflict},
		{"a first generation that is not the cluster's is refused", mismatched, Generation("odd", 1), nil},
		{"a first generation of another cluster is refused", Cluster("x"), Generation("y", 1), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := d.CreateCluster(ctx, tt.c, tt.first)
			if err == nil {
				t.Fatal("CreateCluster succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("a failed create leaves nothing behind", func(t *testing.T) {
		if _, err := d.Cluster(ctx, "fresh"); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("Cluster(fresh) = %v, want ErrNotFound", err)
		}
	})
	t.Run("a missing cluster is not found and has no generations", func(t *testing.T) {
		if _, err := d.Cluster(ctx, "nope"); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("Cluster = %v, want ErrNotFound", err)
		}
		gens, err := d.Generations(ctx, "nope")
		if err != nil || len(gens) != 0 {
			t.Fatalf("Generations = %v, %v", gens, err)
		}
	})
}

func testCertificates(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	CreateCluster(t, d, "c")
	CreateCluster(t, d, "other")

	var want []store.IssuedCertificate
	for n := 1; n <= 3; n++ {
		ic := Cert("c", 1, n)
		ic.Privileged = n == 2 // and read back as such
		if err := d.RecordCertificate(ctx, ic); err != nil {
			t.Fatal(err)
		}
		ic.NotBefore, ic.NotAfter, ic.IssuedAt = utc(ic.NotBefore), utc(ic.NotAfter), utc(ic.IssuedAt)
		want = append([]store.IssuedCertificate{ic}, want...)
	}
	if err := d.RecordCertificate(ctx, Cert("other", 1, 9)); err != nil {
		t.Fatal(err)
	}

	t.Run("certificates come back newest first, only the cluster's", func(t *testing.T) {
		got, err := d.Certificates(ctx, All("c"))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Certificates =\n%+v\nwant\n%+v", got, want)
		}
	})
	t.Run("certificates issued at the same instant come back by descending serial", func(t *testing.T) {
		a, b := Cert("other", 1, 10), Cert("other", 1, 11)
		b.IssuedAt = a.IssuedAt
		for _, ic := range []store.IssuedCertificate{a, b} {
			if err := d.RecordCertificate(ctx, ic); err != nil {
				t.Fatal(err)
			}
		}
		got, err := d.Certificates(ctx, All("other"))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || got[0].Serial != b.Serial || got[1].Serial != a.Serial {
			t.Fatalf("order = %v", serials(got))
		}
	})

	errs := []struct {
		name string
		ic   store.IssuedCertificate
		want error
	}{
		{"a serial the cluster has is a conflict", Cert("c", 1, 2), api.ErrConflict},
		{"an unknown cluster is not found", Cert("nope", 1, 1), api.ErrNotFound},
		{"an unknown generation is not found", Cert("c", 7, 100), api.ErrNotFound},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			if err := d.RecordCertificate(ctx, tt.ic); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("the same serial in another cluster is fine", func(t *testing.T) {
		if err := d.RecordCertificate(ctx, Cert("other", 1, 2)); err != nil {
			t.Fatal(err)
		}
	})
}

func serials(cs []store.IssuedCertificate) []string {
	var s []string
	for _, c := range cs {
		s = append(s, c.Serial)
	}
	return s
}

func testRekey(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	now := T0.Add(48 * time.Hour)
	d, _ := newStore(t)
	CreateCluster(t, d, "c")
	for n := 1; n <= 2; n++ {
		if err := d.RecordCertificate(ctx, Cert("c", 1, n)); err != nil {
			t.Fatal(err)
		}
	}
	until := now.Add(time.Hour)

	t.Run("a rekey retires the old generation and revokes what it signed", func(t *testing.T) {
		if err := d.Rekey(ctx, "c", 1, Generation("c", 2), now, until); err != nil {
			t.Fatal(err)
		}
		c, err := d.Cluster(ctx, "c")
		if err != nil || c.Generation != 2 {
			t.Fatalf("Cluster = %+v, %v; want generation 2", c, err)
		}
		gens, err := d.Generations(ctx, "c")
		if err != nil {
			t.Fatal(err)
		}
		if len(gens) != 2 || gens[0].Generation != 2 || gens[1].Generation != 1 {
			t.Fatalf("generations %+v, want 2 then 1", gens)
		}
		if !gens[0].RetiredAt.IsZero() || !gens[0].TrustedUntil.IsZero() {
			t.Fatalf("active generation retired: %+v", gens[0])
		}
		if !gens[1].RetiredAt.Equal(now) || !gens[1].TrustedUntil.Equal(until) {
			t.Fatalf("generation 1 retired %v until %v, want %v until %v", gens[1].RetiredAt, gens[1].TrustedUntil, now, until)
		}
		certs, err := d.Certificates(ctx, All("c"))
		if err != nil {
			t.Fatal(err)
		}
		for _, ic := range certs {
			if !ic.RevokedAt.Equal(until) {
				t.Fatalf("certificate %s revoked at %v, want %v", ic.Serial, ic.RevokedAt, until)
			}
		}
	})

	t.Run("a certificate recorded for a retired generation is stored revoked", func(t *testing.T) {
		if err := d.RecordCertificate(ctx, Cert("c", 1, 3)); err != nil {
			t.Fatal(err)
		}
		if err := d.RecordCertificate(ctx, Cert("c", 2, 4)); err != nil {
			t.Fatal(err)
		}
		certs, _ := d.Certificates(ctx, All("c"))
		byserial := map[string]store.IssuedCertificate{}
		for _, ic := range certs {
			byserial[ic.Serial] = ic
		}
		if late := byserial[Cert("c", 1, 3).Serial]; !late.RevokedAt.Equal(until) {
			t.Fatalf("late certificate of generation 1 revoked at %v, want %v", late.RevokedAt, until)
		}
		if cur := byserial[Cert("c", 2, 4).Serial]; !cur.RevokedAt.IsZero() {
			t.Fatalf("certificate of the active generation revoked at %v", cur.RevokedAt)
		}
	})

	t.Run("a certificate that requires the active generation is refused for a retired one", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			c    store.IssuedCertificate
			want error // nil: recorded
		}{
			{"retired generation", active(Cert("c", 1, 5)), api.ErrGenerationMismatch},
			{"active generation", active(Cert("c", 2, 6)), nil},
			{"missing generation", active(Cert("c", 9, 7)), api.ErrNotFound},
			{"missing cluster", active(Cert("none", 1, 8)), api.ErrNotFound},
		} {
			err := d.RecordCertificate(ctx, tc.c)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("%s: RecordCertificate = %v, want %v", tc.name, err, tc.want)
			}
			got, err := d.Certificate(ctx, tc.c.Cluster, tc.c.Serial)
			switch {
			case tc.want != nil && !errors.Is(err, api.ErrNotFound):
				t.Fatalf("%s: a refused certificate was recorded: %+v, %v", tc.name, got, err)
			case tc.want == nil && (err != nil || !got.RevokedAt.IsZero()):
				t.Fatalf("%s: Certificate = %+v, %v; want it recorded, not revoked", tc.name, got, err)
			}
		}
	})

	t.Run("a second rekey with no grace caps the earlier grace", func(t *testing.T) {
		now2 := now.Add(time.Minute)
		if err := d.Rekey(ctx, "c", 2, Generation("c", 3), now2, now2); err != nil {
			t.Fatal(err)
		}
		gens, _ := d.Generations(ctx, "c")
		if len(gens) != 3 {
			t.Fatalf("%d generations", len(gens))
		}
		for _, g := range gens[1:] {
			if !g.TrustedUntil.Equal(now2) {
				t.Fatalf("generation %d trusted until %v, want %v", g.Generation, g.TrustedUntil, now2)
			}
		}
		if !gens[2].RetiredAt.Equal(now) || !gens[1].RetiredAt.Equal(now2) {
			t.Fatalf("retirement times moved: %v, %v", gens[2].RetiredAt, gens[1].RetiredAt)
		}
		certs, _ := d.Certificates(ctx, All("c"))
		for _, ic := range certs {
			if !ic.RevokedAt.Equal(now2) {
				t.Fatalf("certificate %s of generation %d revoked at %v, want %v", ic.Serial, ic.Generation, ic.RevokedAt, now2)
			}
		}
	})

	t.Run("a later rekey with a longer grace never extends trust", func(t *testing.T) {
		now3 := now.Add(2 * time.Minute)
		if err := d.Rekey(ctx, "c", 3, Generation("c", 4), now3, now3.Add(24*time.Hour)); err != nil {
			t.Fatal(err)
		}
		gens, _ := d.Generations(ctx, "c")
		for _, g := range gens[2:] {
			if !g.TrustedUntil.Equal(now.Add(time.Minute)) {
				t.Fatalf("generation %d trusted until %v, extended", g.Generation, g.TrustedUntil)
			}
		}
		if !gens[1].TrustedUntil.Equal(now3.Add(24 * time.Hour)) {
			t.Fatalf("generation 3 trusted until %v", gens[1].TrustedUntil)
		}
	})
}

func testRekeyErrors(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	now := T0.Add(48 * time.Hour)
	errs := []struct {
		name     string
		cluster  string
		expected int
		next     store.CAGeneration
		want     error
	}{
		{"a stale expected generation is a mismatch", "c", 0, Generation("c", 1), api.ErrGenerationMismatch},
		{"a future expected generation is a mismatch", "c", 5, Generation("c", 6), api.ErrGenerationMismatch},
		{"a next generation that skips is a mismatch", "c", 1, Generation("c", 3), api.ErrGenerationMismatch},
		{"a missing cluster is not found", "nope", 1, Generation("nope", 2), api.ErrNotFound},
		{"a reused key ref is a conflict", "c", 1, func() store.CAGeneration {
			g := Generation("c", 2)
			g.KeyRef = Generation("c", 1).KeyRef
			return g
		}(), api.ErrConflict},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := newStore(t)
			CreateCluster(t, d, "c")
			if err := d.RecordCertificate(ctx, Cert("c", 1, 1)); err != nil {
				t.Fatal(err)
			}
			err := d.Rekey(ctx, tt.cluster, tt.expected, tt.next, now, now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			// Nothing moved.
			gens, _ := d.Generations(ctx, "c")
			c, _ := d.Cluster(ctx, "c")
			certs, _ := d.Certificates(ctx, All("c"))
			if c.Generation != 1 || len(gens) != 1 || !gens[0].RetiredAt.IsZero() || !certs[0].RevokedAt.IsZero() {
				t.Fatalf("a failed rekey changed the store: %+v %+v %+v", c, gens, certs)
			}
		})
	}
}

// rekeyRace makes every handle in dbs try, from workers goroutines, to
// rekey cluster "c" from the same expected generation, and returns how many
// won and the errors of the others.
func rekeyRace(dbs []Store, workers, expected int) (wins int, losses []error) {
	ctx := context.Background()
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for i := range workers {
		wg.Go(func() {
			d := dbs[i%len(dbs)]
			next := Generation("c", expected+1)
			next.KeyRef = fmt.Sprintf("ca/c/%d/worker-%d", expected+1, i)
			<-start
			err := d.Rekey(ctx, "c", expected, next, T0, T0)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
			} else {
				losses = append(losses, err)
			}
		})
	}
	close(start)
	wg.Wait()
	return wins, losses
}

// checkChain fails t unless cluster c has generations 1..want, one each,
// the pointer on want, and every older one retired.
func checkChain(t *testing.T, d Store, want int) {
	t.Helper()
	ctx := context.Background()
	c, err := d.Cluster(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	gens, err := d.Generations(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if c.Generation != want || len(gens) != want {
		t.Fatalf("pointer %d, %d generations; want %d", c.Generation, len(gens), want)
	}
	for i, g := range gens {
		if g.Generation != want-i {
			t.Fatalf("generation %d at position %d: gap or fork", g.Generation, i)
		}
		if retired := !g.RetiredAt.IsZero(); retired != (i > 0) {
			t.Fatalf("generation %d retired=%v", g.Generation, retired)
		}
	}
}

func testRekeyRace(t *testing.T, newStore NewStore) {
	tests := []struct {
		name    string
		handles int
	}{
		{"16 goroutines on one handle: exactly one rekey wins", 1},
		{"16 goroutines on two handles of one database, like two instances: exactly one wins", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, another := newStore(t)
			dbs := []Store{first}
			for len(dbs) < tt.handles {
				dbs = append(dbs, another())
			}
			CreateCluster(t, dbs[0], "c")
			for round := 1; round <= 3; round++ {
				wins, losses := rekeyRace(dbs, 16, round)
				if wins != 1 || len(losses) != 15 {
					t.Fatalf("round %d: %d wins, %d losses (%v), want 1 and 15", round, wins, len(losses), losses)
				}
				for _, err := range losses {
					if !errors.Is(err, api.ErrGenerationMismatch) {
						t.Fatalf("round %d: a loser got %v, want ErrGenerationMismatch", round, err)
					}
				}
				for _, d := range dbs {
					checkChain(t, d, round+1)
				}
			}
		})
	}
}

func testRekeyRetryLoop(t *testing.T, newStore NewStore) {
	// Each worker rekeys a given number of times, re-reading the generation
	// after each lost race: every success must be one link of one chain.
	ctx := context.Background()
	first, another := newStore(t)
	dbs := []Store{first, another()}
	CreateCluster(t, dbs[0], "c")
	const workers, each = 8, 3
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			d := dbs[w%2]
			for done := 0; done < each; {
				c, err := d.Cluster(ctx, "c")
				if err != nil {
					errs <- err
					return
				}
				next := Generation("c", c.Generation+1)
				next.KeyRef = fmt.Sprintf("ca/c/w%d/%d", w, done)
				err = d.Rekey(ctx, "c", c.Generation, next, T0, T0)
				switch {
				case err == nil:
					done++
				case !errors.Is(err, api.ErrGenerationMismatch):
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkChain(t, dbs[1], 1+workers*each)
}

// testRecordRacingRekey records certificates of generation 1 from several
// goroutines on two handles while another rekeys: whichever commits first,
// every certificate of the retired generation ends revoked when it leaves
// the trust bundle, and none of the new generation is.
func testRecordRacingRekey(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	first, another := newStore(t)
	dbs := []Store{first, another()}
	CreateCluster(t, dbs[0], "c")
	until := T0.Add(time.Hour)
	const workers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers+1)
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			<-start
			for i := range each {
				n := 1 + w*each + i
				if err := dbs[w%2].RecordCertificate(ctx, Cert("c", 1, n)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		<-start
		if err := dbs[1].Rekey(ctx, "c", 1, Generation("c", 2), T0, until); err != nil {
			errs <- err
		}
	})
	release(t, start, &wg, errs)
	if err := dbs[0].RecordCertificate(ctx, Cert("c", 2, 1000)); err != nil {
		t.Fatal(err)
	}
	certs, err := dbs[0].Certificates(ctx, All("c"))
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != workers*each+1 {
		t.Fatalf("%d certificates, want %d", len(certs), workers*each+1)
	}
	for _, ic := range certs {
		switch {
		case ic.Generation == 1 && !ic.RevokedAt.Equal(until):
			t.Fatalf("certificate %s of the retired generation revoked at %v, want %v", ic.Serial, ic.RevokedAt, until)
		case ic.Generation == 2 && !ic.RevokedAt.IsZero():
			t.Fatalf("certificate %s of the active generation revoked at %v", ic.Serial, ic.RevokedAt)
		}
	}
}

// active returns c with RequireActive set, as a sign records it.
func active(c store.IssuedCertificate) store.IssuedCertificate {
	c.RequireActive = true
	return c
}

// testActiveRecordRacingRekey records, from two handles, certificates that
// require the active generation while a rekey retires it: every record
// either succeeded, and its certificate is in the registry revoked with
// its generation, or failed with api.ErrGenerationMismatch and recorded
// nothing. None is left trusted under the retired generation.
func testActiveRecordRacingRekey(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	first, another := newStore(t)
	dbs := []Store{first, another()}
	CreateCluster(t, dbs[0], "c")
	until := T0.Add(time.Hour)
	const workers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each+1)
	start := make(chan struct{})
	var mu sync.Mutex
	refused := map[string]bool{}
	for w := range workers {
		wg.Go(func() {
			<-start
			for i := range each {
				c := active(Cert("c", 1, 1+w*each+i))
				err := dbs[w%2].RecordCertificate(ctx, c)
				switch {
				case errors.Is(err, api.ErrGenerationMismatch):
					mu.Lock()
					refused[c.Serial] = true
					mu.Unlock()
				case err != nil:
					errs <- err
				}
			}
		})
	}
	wg.Go(func() {
		<-start
		if err := dbs[1].Rekey(ctx, "c", 1, Generation("c", 2), T0, until); err != nil {
			errs <- err
		}
	})
	release(t, start, &wg, errs)
	certs, err := dbs[0].Certificates(ctx, All("c"))
	if err != nil {
		t.Fatal(err)
	}
	if len(certs)+len(refused) != workers*each {
		t.Fatalf("%d certificates recorded and %d refused, want %d in all", len(certs), len(refused), workers*each)
	}
	for _, ic := range certs {
		if refused[ic.Serial] {
			t.Fatalf("refused certificate %s was recorded", ic.Serial)
		}
		if !ic.RevokedAt.Equal(until) {
			t.Fatalf("certificate %s of the retired generation revoked at %v, want %v", ic.Serial, ic.RevokedAt, until)
		}
	}
	t.Logf("%d certificates recorded before the rekey, %d refused after it", len(certs), len(refused))
}

func testTimesOutOfRange(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	g := Generation("far", 1)
	g.NotAfter = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := d.CreateCluster(ctx, Cluster("far"), g); err == nil {
		t.Fatal("CreateCluster stored year 10000")
	}
	if _, err := d.Cluster(ctx, "far"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("Cluster(far) = %v, want ErrNotFound", err)
	}
}

func testClosed(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	checks := map[string]error{
		"Ping":          d.Ping(ctx),
		"CreateCluster": d.CreateCluster(ctx, Cluster("x"), Generation("x", 1)),
		"PutBlob":       d.PutBlob(ctx, "r", []byte("b")),
		"Rekey":         d.Rekey(ctx, "x", 1, Generation("x", 2), T0, T0),
		"RotateKEK":     d.RotateKEK(ctx, "x", 1, KEKVersion("x", 2)),
	}
	_, checks["Cluster"] = d.Cluster(ctx, "x")
	_, checks["KEKVersions"] = d.KEKVersions(ctx, "x")
	_, checks["GetBlob"] = d.GetBlob(ctx, "r")
	for name, err := range checks {
		if !errors.Is(err, api.ErrUnavailable) {
			t.Errorf("%s after Close: %v, want ErrUnavailable", name, err)
		}
	}
}

// testConcurrentRecords records certificates from many goroutines at once,
// among them a duplicate serial and a missing generation: each caller gets
// its own outcome (a store may batch concurrent records into one
// transaction, as SQLite's group commit does), and exactly the good ones
// are stored.
func testConcurrentRecords(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, another := newStore(t)
	CreateCluster(t, d, "c")
	if err := d.RecordCertificate(ctx, Cert("c", 1, 1)); err != nil {
		t.Fatal(err)
	}
	dbs := []Store{d, another()}
	type call struct {
		cert store.IssuedCertificate
		want error
	}
	var calls []call
	for n := 2; n <= 21; n++ {
		calls = append(calls, call{cert: Cert("c", 1, n)})
	}
	calls = append(calls, call{Cert("c", 1, 1), api.ErrConflict}, call{Cert("c", 7, 100), api.ErrNotFound})
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, c := range calls {
		wg.Go(func() {
			<-start
			errs[i] = dbs[i%2].RecordCertificate(ctx, c.cert)
		})
	}
	close(start)
	wg.Wait()
	for i, c := range calls {
		if (c.want == nil && errs[i] != nil) || (c.want != nil && !errors.Is(errs[i], c.want)) {
			t.Errorf("record %s (generation %d): %v, want %v", c.cert.Serial, c.cert.Generation, errs[i], c.want)
		}
	}
	got, err := d.Certificates(ctx, All("c"))
	if err != nil || len(got) != 21 {
		t.Fatalf("registry holds %d certificates (%v), want 21", len(got), err)
	}
}

// release starts a race held at start, waits for every goroutine of wg,
// and fails t with the first error they sent to errs.
func release(t *testing.T, start chan struct{}, wg *sync.WaitGroup, errs chan error) {
	t.Helper()
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
