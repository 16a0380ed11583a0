package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/storetest"
)

// restartServer stops the package's server, runs during, and starts it
// again (the data kept), also when t fails in between.
func restartServer(t *testing.T, during func()) {
	t.Helper()
	if _, err := pgScript("stop", server.dir); err != nil {
		t.Fatalf("stop the server: %v", err)
	}
	started := false
	start := func() {
		if started {
			return
		}
		started = true
		if _, err := pgScript("start", server.dir); err != nil {
			t.Fatalf("start the server again: %v", err)
		}
	}
	defer start()
	during()
	start()
}

// PostgreSQL stopped: every call fails with api.ErrUnavailable (503
// backend_unavailable) and Ping (/readyz) fails; nothing is half-written;
// started again, the same store works without being reopened.
func TestOutage(t *testing.T) {
	ctx := context.Background()
	d := openDSN(t, newSchema(t))
	storetest.CreateCluster(t, d, "c")
	if err := d.CreateKEK(ctx, storetest.KEK("k"), storetest.KEKVersion("k", 1)); err != nil {
		t.Fatal(err)
	}
	if err := d.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	restartServer(t, func() {
		callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		checks := map[string]error{
			"Ping":              d.Ping(callCtx),
			"Rekey":             d.Rekey(callCtx, "c", 1, storetest.Generation("c", 2), storetest.T0, storetest.T0),
			"RotateKEK":         d.RotateKEK(callCtx, "k", 1, storetest.KEKVersion("k", 2)),
			"RecordCertificate": d.RecordCertificate(callCtx, storetest.Cert("c", 1, 1)),
			"PutBlob":           d.PutBlob(callCtx, "r", []byte("b")),
		}
		_, checks["Cluster"] = d.Cluster(callCtx, "c")
		_, checks["Generations"] = d.Generations(callCtx, "c")
		_, checks["GetBlob"] = d.GetBlob(callCtx, "r")
		for name, err := range checks {
			if !errors.Is(err, api.ErrUnavailable) {
				t.Errorf("%s with the server stopped: %v, want ErrUnavailable", name, err)
			}
		}
	})

	if err := d.Ping(ctx); err != nil {
		t.Fatalf("Ping after the restart: %v", err)
	}
	c, err := d.Cluster(ctx, "c")
	if err != nil || c.Generation != 1 {
		t.Fatalf("after the outage: %+v, %v; want generation 1, untouched", c, err)
	}
	if gens, err := d.Generations(ctx, "c"); err != nil || len(gens) != 1 || !gens[0].RetiredAt.IsZero() {
		t.Fatalf("a failed rekey left generations %+v, %v", gens, err)
	}
	if certs, err := d.Certificates(ctx, storetest.All("c")); err != nil || len(certs) != 0 {
		t.Fatalf("a failed record left %+v, %v", certs, err)
	}
	if err := d.Rekey(ctx, "c", 1, storetest.Generation("c", 2), storetest.T0, storetest.T0); err != nil {
		t.Fatalf("Rekey after the restart: %v", err)
	}
	if err := d.RotateKEK(ctx, "k", 1, storetest.KEKVersion("k", 2)); err != nil {
		t.Fatalf("RotateKEK after the restart: %v", err)
	}

	t.Run("after a restart no call saw, the first call works", func(t *testing.T) {
		// The pool still holds connections the server closed.
		restartServer(t, func() {})
		if _, err := d.Cluster(ctx, "c"); err != nil {
			t.Fatalf("first read after the restart: %v", err)
		}
		restartServer(t, func() {})
		if err := d.RecordCertificate(ctx, storetest.Cert("c", 2, 1)); err != nil {
			t.Fatalf("first write after the restart: %v", err)
		}
	})
}

// The server stops while signs and rekeys are under way on two instances:
// every call fails with api.ErrUnavailable or succeeds, every success is
// kept, the generations stay one chain, and after the restart both
// instances carry on.
func TestOutageMidUse(t *testing.T) {
	ctx := context.Background()
	dsn := newSchema(t)
	dbs := []*DB{openDSN(t, dsn), openDSN(t, dsn)}
	storetest.CreateCluster(t, dbs[0], "c")

	var (
		stop     atomic.Bool
		mu       sync.Mutex
		recorded []store.IssuedCertificate
		bad      []error
		failures atomic.Int64
		wg       sync.WaitGroup
		serial   atomic.Int64
	)
	fail := func(err error) {
		failures.Add(1)
		if !errors.Is(err, api.ErrUnavailable) && !errors.Is(err, api.ErrGenerationMismatch) {
			mu.Lock()
			bad = append(bad, err)
			mu.Unlock()
		}
	}
	for w := range 4 {
		wg.Go(func() {
			d := dbs[w%2]
			for !stop.Load() {
				callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if w == 0 { // the rekeyer
					if c, err := d.Cluster(callCtx, "c"); err != nil {
						fail(err)
					} else {
						next := storetest.Generation("c", c.Generation+1)
						next.KeyRef = fmt.Sprintf("ca/c/%d/%d", c.Generation+1, serial.Add(1))
						if err := d.Rekey(callCtx, "c", c.Generation, next, storetest.T0, storetest.T0); err != nil {
							fail(err)
						}
					}
				} else {
					c, err := d.Cluster(callCtx, "c")
					if err != nil {
						fail(err)
					} else {
						ic := storetest.Cert("c", c.Generation, int(serial.Add(1)))
						if err := d.RecordCertificate(callCtx, ic); err != nil {
							fail(err)
						} else {
							mu.Lock()
							recorded = append(recorded, ic)
							mu.Unlock()
						}
					}
				}
				cancel()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	restartServer(t, func() { time.Sleep(300 * time.Millisecond) })
	// Carry on until both instances have written again.
	before := len(snapshot(&mu, &recorded))
	deadline := time.Now().Add(30 * time.Second)
	for len(snapshot(&mu, &recorded)) < before+10 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()

	if failures.Load() == 0 {
		t.Fatal("no call failed while the server was stopped")
	}
	for _, err := range bad {
		t.Errorf("a call failed with %v, want ErrUnavailable (or a lost rekey race)", err)
	}
	if got := len(recorded); got < before+10 {
		t.Fatalf("only %d certificates recorded after the restart", got-before)
	}
	certs, err := dbs[1].Certificates(ctx, storetest.All("c"))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, ic := range certs {
		have[ic.Serial] = true
	}
	for _, ic := range recorded {
		if !have[ic.Serial] {
			t.Fatalf("certificate %s was recorded and is gone", ic.Serial)
		}
	}
	c, err := dbs[0].Cluster(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	gens, err := dbs[1].Generations(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if len(gens) != c.Generation {
		t.Fatalf("pointer %d, %d generations", c.Generation, len(gens))
	}
	for i, g := range gens {
		if g.Generation != c.Generation-i || (!g.RetiredAt.IsZero()) != (i > 0) {
			t.Fatalf("generation %d at %d (retired %v): gap, fork or half-done rekey", g.Generation, i, g.RetiredAt)
		}
	}
}

func snapshot(mu *sync.Mutex, s *[]store.IssuedCertificate) []store.IssuedCertificate {
	mu.Lock()
	defer mu.Unlock()
	return *s
}
