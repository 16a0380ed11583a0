package postgres

import (
	"context"
	"crypto/rand"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
	"github.com/clusterkeys/clusterkeys/pkg/reconcile"
	"github.com/clusterkeys/clusterkeys/pkg/store/storetest"
)

// TestReconcilerOverPostgres runs the custody reconciler on the
// PostgreSQL store with software custody (sealed keys in the same
// database), from two instances: within the safety window only the
// retired CA key goes; past it the orphan goes too; the live key stays.
// Blob creation times come from the server's clock, the window from the
// instance's.
func TestReconcilerOverPostgres(t *testing.T) {
	ctx := context.Background()
	dsn := newSchema(t)
	one, two := openDSN(t, dsn), openDSN(t, dsn)
	mk := make([]byte, software.MasterKeySize)
	if _, err := rand.Read(mk); err != nil {
		t.Fatal(err)
	}
	custody := func(d *DB) *software.Custody {
		t.Helper()
		c, err := software.New(mk, d)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1, c2 := custody(one), custody(two)
	ref := func(cluster string, gen int) string {
		return "ca/" + cluster + "/" + string(rune('0'+gen)) + "/" + strings.Repeat("ab", 16)
	}
	for _, r := range []string{ref("a", 1), ref("a", 2), ref("orphan", 1)} {
		if _, err := c1.GenerateSigner(ctx, r, keys.ECDSAP256); err != nil {
			t.Fatal(err)
		}
	}
	g1, g2 := storetest.Generation("a", 1), storetest.Generation("a", 2)
	g1.KeyRef, g2.KeyRef = ref("a", 1), ref("a", 2)
	if err := one.CreateCluster(ctx, storetest.Cluster("a"), g1); err != nil {
		t.Fatal(err)
	}
	if err := two.Rekey(ctx, "a", 1, g2, storetest.T0, storetest.T0); err != nil {
		t.Fatal(err)
	}
	blobs := func() []string {
		t.Helper()
		bs, err := one.ListBlobs(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		var refs []string
		for _, b := range bs {
			refs = append(refs, b.Ref)
		}
		return refs
	}
	run := func(c *software.Custody, d *DB, now func() time.Time) reconcile.Result {
		t.Helper()
		r := reconcile.New(d, c, reconcile.Options{Now: now, Logger: slog.New(slog.DiscardHandler)})
		res, ran, err := r.RunOnce(ctx)
		if err != nil || !ran {
			t.Fatalf("RunOnce = %+v, ran %v, %v", res, ran, err)
		}
		return res
	}

	if res := run(c1, one, time.Now); res != (reconcile.Result{Listed: 3, Live: 1, Retired: 1, Young: 1, Destroyed: 1}) {
		t.Fatalf("within the window: %+v", res)
	}
	if got, want := blobs(), []string{ref("a", 2), ref("orphan", 1)}; !slices.Equal(got, want) {
		t.Fatalf("custody holds %v, want %v", got, want)
	}
	later := func() time.Time { return time.Now().Add(reconcile.DefaultSafetyWindow + time.Minute) }
	if res := run(c2, two, later); res != (reconcile.Result{Listed: 2, Live: 1, Orphans: 1, Destroyed: 1}) {
		t.Fatalf("past the window, from the other instance: %+v", res)
	}
	if got, want := blobs(), []string{ref("a", 2)}; !slices.Equal(got, want) {
		t.Fatalf("custody holds %v, want only the live key %v", got, want)
	}
	if _, err := c1.Signer(ctx, ref("a", 2)); err != nil {
		t.Fatalf("the live key: %v", err)
	}
}
