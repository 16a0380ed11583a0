// Package backends opens the metadata store and the key custody a Config
// names, among those registered (store.Register, keys.Register) by the
// backend packages a binary links (see pkg/backends/all). It is where
// backends and the functions meet: the functions only see the small
// interfaces they define (ca.Store, ca.Keys, keywrap.Store,
// keywrap.Custody), and this package checks that what it opens satisfies
// them.
package backends

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/clusterkeys/clusterkeys/pkg/ca"
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
	"github.com/clusterkeys/clusterkeys/pkg/reconcile"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// Store is every store interface the functions define.
type Store interface {
	ca.Store
	keywrap.Store
	reconcile.Store
	Ping(ctx context.Context) error
	Close() error
}

// Custody is the custody contract (pkg/keys) every backend implements.
type Custody = keys.Custody

// Where custody and its users meet: every keys.Custody is what the CA, the
// wrap/unwrap function and the reconciler ask of it.
var (
	_ ca.Keys           = keys.Custody(nil)
	_ keywrap.Custody   = keys.Custody(nil)
	_ reconcile.Custody = keys.Custody(nil)
)

// Backends are an open store and custody.
type Backends struct {
	Store   Store
	Custody Custody
	// SignerCacheSize is what the CA should use for ca.Options: custody
	// that must load keys only for the operation (Barbican) disables it.
	SignerCacheSize int
	closers         []func() error
}

// Open opens the store and custody cfg names, creating the state directory
// (0700) when the defaults live there. cfg must be resolved.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger, reg metrics.Registerer) (*Backends, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	b := &Backends{}
	db, err := openStore(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", cfg.StoreName(), err)
	}
	b.Store = db
	b.closers = append(b.closers, db.Close)

	kb, ok := keys.Lookup(cfg.Keys)
	if !ok {
		b.Close()
		return nil, fmt.Errorf("key custody %q is not built in yet", cfg.Keys)
	}
	c, err := kb.Open(ctx, keys.OpenOptions{Config: cfg, Blobs: db, Logger: log, Registerer: reg})
	if err != nil {
		b.Close()
		return nil, err
	}
	b.Custody = c
	if cl, ok := c.(io.Closer); ok {
		b.closers = append(b.closers, cl.Close)
	}
	if kb.NoSignerCache {
		b.SignerCacheSize = -1
	}
	return b, nil
}

// storeWithBlobs is a store that also keeps the blobs of custody.
type storeWithBlobs interface {
	Store
	keys.Blobs
}

// openStore opens the store cfg.Store names, with the store registered
// for its prefix. Its errors never hold the value, which may hold a
// password.
func openStore(ctx context.Context, cfg config.Config) (storeWithBlobs, error) {
	sb, _, ok := config.StoreFor(cfg.Store)
	if !ok {
		return nil, fmt.Errorf("not built in: want %s", config.StoreUsage(false))
	}
	opener, ok := store.Lookup(sb.Name)
	if !ok {
		return nil, fmt.Errorf("store %q is not built in", sb.Name)
	}
	h, err := opener.Open(ctx, cfg.Store)
	if err != nil {
		return nil, err
	}
	db, ok := h.(storeWithBlobs)
	if !ok {
		h.Close()
		return nil, fmt.Errorf("store %q lacks methods the functions need (run pkg/store/storetest against it)", sb.Name)
	}
	return db, nil
}

// StartReconciler runs the custody reconciler (pkg/reconcile) in the
// background, at once and every cfg.ReconcileInterval, until ctx ends;
// the returned function waits for it to stop. An interval of 0 starts
// nothing. For long-running processes (localrun serve, the KMS shim): a
// Lambda sandbox is frozen between invocations.
func (b *Backends) StartReconciler(ctx context.Context, cfg config.Config, log *slog.Logger, reg metrics.Registerer) (wait func()) {
	if cfg.ReconcileInterval <= 0 {
		return func() {}
	}
	r := reconcile.New(b.Store, b.Custody, reconcile.Options{
		SafetyWindow: cfg.OrphanSafetyWindow, Interval: cfg.ReconcileInterval, Logger: log, Registerer: reg,
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	return func() { <-done }
}

// Ready reports whether the store and custody both answer.
func (b *Backends) Ready(ctx context.Context) error {
	if err := b.Store.Ping(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := b.Custody.Check(ctx); err != nil {
		return fmt.Errorf("key custody: %w", err)
	}
	return nil
}

// Close closes custody and the store.
func (b *Backends) Close() error {
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	b.closers = nil
	return errors.Join(errs...)
}
