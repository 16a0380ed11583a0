package store

import (
	"context"

	"github.com/clusterkeys/clusterkeys/pkg/config"
)

// Handle is an open store as its backend hands it out; pkg/backends
// checks that it implements every store interface the functions define
// (and the conformance suite pkg/store/storetest holds it to them).
type Handle interface {
	// Ping reports whether the database answers.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// Backend is a store as it registers itself.
type Backend struct {
	// Rank, Prefixes, Usage and Path are what the settings know of it (see
	// config.StoreBackend).
	Rank     int
	Prefixes []string
	Usage    []string
	Path     bool
	// Open opens the store the --store value names. Its errors never hold
	// a secret of the value (a PostgreSQL connection string's password:
	// PostgreSQL's say nothing of the string); SQLite's name the path.
	Open func(ctx context.Context, value string) (Handle, error)
}

var backends config.Registry[Backend]

// Register makes the store called name available to pkg/backends and
// known to the settings. A store package calls it from its init; a binary
// links the stores it imports (see pkg/backends/all). It panics when name
// or a prefix is taken.
func Register(name string, b Backend) {
	backends.Register(name, b)
	config.RegisterStore(config.StoreBackend{Name: name, Rank: b.Rank, Prefixes: b.Prefixes, Usage: b.Usage, Path: b.Path})
}

// Lookup returns the store called name.
func Lookup(name string) (Backend, bool) { return backends.Lookup(name) }
