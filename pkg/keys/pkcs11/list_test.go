package pkcs11

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/reconcile"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

var _ reconcile.Custody = (*Custody)(nil)

func TestListKeysAndReconcileOnSoftHSM(t *testing.T) {
	ctx := context.Background()
	c := openCustody(t, newToken(t), Options{})
	caRef := "ca/c1/1/" + strings.Repeat("a", 32)
	kekRef := "kek/etcd/v1/" + strings.Repeat("b", 16)
	if _, err := c.GenerateSigner(ctx, caRef, keys.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	if err := c.GenerateKEK(ctx, kekRef); err != nil {
		t.Fatal(err)
	}
	listed, err := c.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, l := range listed {
		if !l.Created.IsZero() {
			t.Errorf("%s has a creation time %v; PKCS#11 gives none", l.Ref, l.Created)
		}
		refs = append(refs, l.Ref)
	}
	if want := []string{caRef, kekRef}; !slices.Equal(refs, want) {
		t.Fatalf("ListKeys = %v, want %v (and not the health key)", refs, want)
	}

	// Neither key is named by a store row: the reconciler keeps them for
	// a window from when it first sees them, then destroys them.
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "clusterkeys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	start := time.Now()
	for _, step := range []struct {
		at        time.Duration
		destroyed int
	}{{0, 0}, {30 * time.Minute, 0}, {61 * time.Minute, 2}} {
		r := reconcile.New(db, c, reconcile.Options{Logger: slog.New(slog.DiscardHandler),
			Now: func() time.Time { return start.Add(step.at) }})
		res, ran, err := r.RunOnce(ctx)
		if err != nil || !ran || res.Destroyed != step.destroyed {
			t.Fatalf("at +%v: %+v, ran %v, %v; want %d destroyed", step.at, res, ran, err, step.destroyed)
		}
	}
	if listed, err := c.ListKeys(ctx); err != nil || len(listed) != 0 {
		t.Fatalf("after reconcile: %v, %v", listed, err)
	}
	if err := c.Check(ctx); err != nil {
		t.Fatalf("the health key was touched: %v", err)
	}
}
