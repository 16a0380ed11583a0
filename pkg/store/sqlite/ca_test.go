package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

func TestClusterRoundTrip(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	c, g := testCluster("prod"), testGeneration("prod", 1)
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

func TestClusterErrors(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	createCluster(t, d, "taken")

	otherRef := testGeneration("taken", 1)
	otherRef.KeyRef = "ca/other/1"
	reusedRef := testGeneration("fresh", 1)
	reusedRef.KeyRef = testGeneration("taken", 1).KeyRef
	mismatched := testCluster("odd")
	mismatched.Generation = 2

	tests := []struct {
		name  string
		c     store.Cluster
		first store.CAGeneration
		want  error
	}{
		{"an existing cluster is a conflict", testCluster("taken"), otherRef, api.ErrConflict},
		{"a key ref already used is a conflict", testCluster("fresh"), reusedRef, api.ErrConflict},
		{"a first generation that is not the cluster's is refused", mismatched, testGeneration("odd", 1), nil},
		{"a first generation of another cluster is refused", testCluster("x"), testGeneration("y", 1), nil},
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

func TestCertificates(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	createCluster(t, d, "c")
	createCluster(t, d, "other")

	var want []store.IssuedCertificate
	for n := 1; n <= 3; n++ {
		ic := testCert("c", 1, n)
		ic.Privileged = n == 2 // and read back as such
		if err := d.RecordCertificate(ctx, ic); err != nil {
			t.Fatal(err)
		}
		ic.NotBefore, ic.NotAfter, ic.IssuedAt = utc(ic.NotBefore), utc(ic.NotAfter), utc(ic.IssuedAt)
		want = append([]store.IssuedCertificate{ic}, want...)
	}
	if err := d.RecordCertificate(ctx, testCert("other", 1, 9)); err != nil {
		t.Fatal(err)
	}

	t.Run("certificates come back newest first, only the cluster's", func(t *testing.T) {
		got, err := d.Certificates(ctx, all("c"))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Certificates =\n%+v\nwant\n%+v", got, want)
		}
	})
	t.Run("certificates issued at the same instant come back by descending serial", func(t *testing.T) {
		a, b := testCert("other", 1, 10), testCert("other", 1, 11)
		b.IssuedAt = a.IssuedAt
		for _, ic := range []store.IssuedCertificate{a, b} {
			if err := d.RecordCertificate(ctx, ic); err != nil {
				t.Fatal(err)
			}
		}
		got, err := d.Certificates(ctx, all("other"))
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
		{"a serial the cluster has is a conflict", testCert("c", 1, 2), api.ErrConflict},
		{"an unknown cluster is not found", testCert("nope", 1, 1), api.ErrNotFound},
		{"an unknown generation is not found", testCert("c", 7, 100), api.ErrNotFound},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			if err := d.RecordCertificate(ctx, tt.ic); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("the same serial in another cluster is fine", func(t *testing.T) {
		if err := d.RecordCertificate(ctx, testCert("other", 1, 2)); err != nil {
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

func TestRekey(t *testing.T) {
	ctx := context.Background()
	now := t0.Add(48 * time.Hour)

	t.Run("a rekey retires the old generation and revokes what it signed", func(t *testing.T) {
		d := openTest(t)
		createCluster(t, d, "c")
		for n := 1; n <= 2; n++ {
			if err := d.RecordCertificate(ctx, testCert("c", 1, n)); err != nil {
				t.Fatal(err)
			}
		}
		until := now.Add(time.Hour)
		if err := d.Rekey(ctx, "c", 1, testGeneration("c", 2), now, until); err != nil {
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
		certs, err := d.Certificates(ctx, all("c"))
		if err != nil {
			t.Fatal(err)
		}
		for _, ic := range certs {
			if !ic.RevokedAt.Equal(until) {
				t.Fatalf("certificate %s revoked at %v, want %v", ic.Serial, ic.RevokedAt, until)
			}
		}

		t.Run("a certificate recorded for a retired generation is stored revoked", func(t *testing.T) {
			if err := d.RecordCertificate(ctx, testCert("c", 1, 3)); err != nil {
				t.Fatal(err)
			}
			if err := d.RecordCertificate(ctx, testCert("c", 2, 4)); err != nil {
				t.Fatal(err)
			}
			certs, _ := d.Certificates(ctx, all("c"))
			byserial := map[string]store.IssuedCertificate{}
			for _, ic := range certs {
				byserial[ic.Serial] = ic
			}
			if late := byserial[testCert("c", 1, 3).Serial]; !late.RevokedAt.Equal(until) {
				t.Fatalf("late certificate of generation 1 revoked at %v, want %v", late.RevokedAt, until)
			}
			if cur := byserial[testCert("c", 2, 4).Serial]; !cur.RevokedAt.IsZero() {
				t.Fatalf("certificate of the active generation revoked at %v", cur.RevokedAt)
			}
		})

		t.Run("a second rekey with no grace caps the earlier grace", func(t *testing.T) {
			now2 := now.Add(time.Minute)
			if err := d.Rekey(ctx, "c", 2, testGeneration("c", 3), now2, now2); err != nil {
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
			certs, _ := d.Certificates(ctx, all("c"))
			for _, ic := range certs {
				if !ic.RevokedAt.Equal(now2) {
					t.Fatalf("certificate %s of generation %d revoked at %v, want %v", ic.Serial, ic.Generation, ic.RevokedAt, now2)
				}
			}
		})

		t.Run("a later rekey with a longer grace never extends trust", func(t *testing.T) {
			now3 := now.Add(2 * time.Minute)
			if err := d.Rekey(ctx, "c", 3, testGeneration("c", 4), now3, now3.Add(24*time.Hour)); err != nil {
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
	})

	errs := []struct {
		name     string
		cluster  string
		expected int
		next     store.CAGeneration
		want     error
	}{
		{"a stale expected generation is a mismatch", "c", 0, testGeneration("c", 1), api.ErrGenerationMismatch},
		{"a future expected generation is a mismatch", "c", 5, testGeneration("c", 6), api.ErrGenerationMismatch},
		{"a next generation that skips is a mismatch", "c", 1, testGeneration("c", 3), api.ErrGenerationMismatch},
		{"a missing cluster is not found", "nope", 1, testGeneration("nope", 2), api.ErrNotFound},
		{"a reused key ref is a conflict", "c", 1, func() store.CAGeneration {
			g := testGeneration("c", 2)
			g.KeyRef = testGeneration("c", 1).KeyRef
			return g
		}(), api.ErrConflict},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			d := openTest(t)
			createCluster(t, d, "c")
			if err := d.RecordCertificate(ctx, testCert("c", 1, 1)); err != nil {
				t.Fatal(err)
			}
			err := d.Rekey(ctx, tt.cluster, tt.expected, tt.next, now, now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			// Nothing moved.
			gens, _ := d.Generations(ctx, "c")
			c, _ := d.Cluster(ctx, "c")
			certs, _ := d.Certificates(ctx, all("c"))
			if c.Generation != 1 || len(gens) != 1 || !gens[0].RetiredAt.IsZero() || !certs[0].RevokedAt.IsZero() {
				t.Fatalf("a failed rekey changed the store: %+v %+v %+v", c, gens, certs)
			}
		})
	}
}

// rekeyRace makes every handle in dbs try, from workers goroutines, to
// rekey cluster "c" from the same expected generation, and returns how many
// won and the errors of the others.
func rekeyRace(t *testing.T, dbs []*DB, workers, expected int) (wins int, losses []error) {
	t.Helper()
	ctx := context.Background()
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for i := range workers {
		wg.Go(func() {
			d := dbs[i%len(dbs)]
			next := testGeneration("c", expected+1)
			next.KeyRef = fmt.Sprintf("ca/c/%d/worker-%d", expected+1, i)
			<-start
			err := d.Rekey(ctx, "c", expected, next, t0, t0)
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
func checkChain(t *testing.T, d *DB, want int) {
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

func TestRekeyRace(t *testing.T) {
	tests := []struct {
		name    string
		handles int
	}{
		{"16 goroutines on one handle: exactly one rekey wins", 1},
		{"16 goroutines on two handles of one file, like two instances: exactly one wins", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "race.db")
			var dbs []*DB
			for range tt.handles {
				dbs = append(dbs, openAt(t, path))
			}
			createCluster(t, dbs[0], "c")
			for round := 1; round <= 3; round++ {
				wins, losses := rekeyRace(t, dbs, 16, round)
				if wins != 1 || len(losses) != 15 {
					t.Fatalf("round %d: %d wins, %d losses, want 1 and 15", round, wins, len(losses))
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

func TestRekeyRetryLoop(t *testing.T) {
	// Each worker rekeys a given number of times, re-reading the generation
	// after each lost race: every success must be one link of one chain.
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "loop.db")
	dbs := []*DB{openAt(t, path), openAt(t, path)}
	createCluster(t, dbs[0], "c")
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
				next := testGeneration("c", c.Generation+1)
				next.KeyRef = fmt.Sprintf("ca/c/w%d/%d", w, done)
				err = d.Rekey(ctx, "c", c.Generation, next, t0, t0)
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
