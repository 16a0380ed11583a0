package store

import (
	"context"
	"fmt"
	"sync"

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
	// the value, which may hold a password.
	Open func(ctx context.Context, value string) (Handle, error)
}

var registry struct {
	sync.Mutex
	backends map[string]Backend
}

// Register makes the store called name available to pkg/backends and
// known to the settings. A store package calls it from its init; a binary
// links the stores it imports (see pkg/backends/all). It panics when name
// or a prefix is taken.
func Register(name string, b Backend) {
	registry.Lock()
	defer registry.Unlock()
	if _, ok := registry.backends[name]; ok || b.Open == nil {
		panic(fmt.Sprintf("store: %q registered twice or without Open", name))
	}
	if registry.backends == nil {
		registry.backends = map[string]Backend{}
	}
	registry.backends[name] = b
	config.RegisterStore(config.StoreBackend{Name: name, Rank: b.Rank, Prefixes: b.Prefixes, Usage: b.Usage, Path: b.Path})
}

// Lookup returns the store called name.
func Lookup(name string) (Backend, bool) {
	registry.Lock()
	defer registry.Unlock()
	b, ok := registry.backends[name]
	return b, ok
}
