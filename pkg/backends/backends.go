// Package backends opens the metadata store and the key custody a Config
// names. It is the one place that knows every backend; the functions only
// see the small interfaces they define (ca.Store, ca.Keys, keywrap.Store,
// keywrap.Custody).
package backends

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clusterkeys/clusterkeys/pkg/ca"
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/keys/barbican"
	"github.com/clusterkeys/clusterkeys/pkg/keys/pkcs11"
	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/openstackauth"
	"github.com/clusterkeys/clusterkeys/pkg/reconcile"
	"github.com/clusterkeys/clusterkeys/pkg/store/postgres"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
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
func Open(ctx context.Context, cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (*Backends, error) {
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

	switch cfg.Keys {
	case "software":
		// Many instances share one master key: delivered in the
		// environment (Lambda) or as a file.
		mk, fromEnv, err := software.MasterKeyFromEnv(os.LookupEnv)
		if err == nil && !fromEnv {
			mk, err = software.LoadOrCreateMasterKey(ctx, cfg.MasterKeyFile, db)
		}
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("software custody: %w", err)
		}
		c, err := software.New(mk, db)
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("software custody: %w", err)
		}
		b.Custody = c
	case "pkcs11":
		// cfg already holds the flags and their CLUSTERKEYS_* variables: the
		// PIN file is read once, and a flag beats the environment.
		pc, err := pkcs11.NewConfig(cfg.PKCS11Module, cfg.PKCS11TokenLabel, cfg.PKCS11PinFile)
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("pkcs11 custody: %w", err)
		}
		c, err := pkcs11.Open(pc, pkcs11.Options{Logger: log, Registerer: reg, CallTimeout: cfg.PKCS11CallTimeout})
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("pkcs11 custody: %w", err)
		}
		b.Custody = c
		b.closers = append(b.closers, c.Close)
	case "barbican":
		bc := barbican.Config{Endpoint: cfg.BarbicanEndpoint, Project: cfg.BarbicanProject, Logger: log}
		if bc.Project == "" {
			// Keystone: the service user's own token, Barbican from the
			// catalog unless --barbican-endpoint overrides it.
			pc, eo, err := openstackauth.Provider(ctx, cfg.OSCloud)
			if err != nil {
				b.Close()
				return nil, fmt.Errorf("barbican custody: %w", err)
			}
			bc.Client = pc
			if bc.Endpoint == "" {
				sc, err := openstack.NewKeyManagerV1(pc, eo)
				if err != nil {
					b.Close()
					return nil, fmt.Errorf("barbican custody: no key-manager in the catalog: %w", err)
				}
				bc.Endpoint = sc.Endpoint
			}
		}
		c, err := barbican.Open(bc, db)
		if err != nil {
			b.Close()
			return nil, err
		}
		b.Custody = c
		b.SignerCacheSize = -1
	default:
		b.Close()
		return nil, fmt.Errorf("key custody %q is not built in yet", cfg.Keys)
	}
	return b, nil
}

// storeWithBlobs is a store that also keeps the blobs of software and
// Barbican custody, and lists them.
type storeWithBlobs interface {
	Store
	software.BlobStore
	software.BlobLister
}

// openStore opens the store cfg.Store names: sqlite:PATH or a PostgreSQL
// URI. Its errors never hold the URI, which may hold a password.
func openStore(ctx context.Context, cfg config.Config) (storeWithBlobs, error) {
	if path, ok := strings.CutPrefix(cfg.Store, "sqlite:"); ok {
		db, err := sqlite.Open(ctx, path)
		if err != nil {
			return nil, err
		}
		return db, nil
	}
	if config.IsPostgres(cfg.Store) {
		db, err := postgres.Open(ctx, cfg.Store)
		if err != nil {
			return nil, err
		}
		return db, nil
	}
	return nil, errors.New("not built in: want sqlite:PATH or postgres://…")
}

// StartReconciler runs the custody reconciler (pkg/reconcile) in the
// background, at once and every cfg.ReconcileInterval, until ctx ends;
// the returned function waits for it to stop. An interval of 0 starts
// nothing. For long-running processes (localrun serve, the KMS shim): a
// Lambda sandbox is frozen between invocations.
func (b *Backends) StartReconciler(ctx context.Context, cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (wait func()) {
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
