package config

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// CustodyBackend is what the settings know of a key custody backend: its
// --keys value and what it reads. Backends register themselves through
// keys.Register, which calls RegisterCustody; the settings then accept
// their names without a list here.
type CustodyBackend struct {
	// Name is the --keys value.
	Name string
	// Rank places it in the lists users see (--help, errors): lowest
	// first, then by name.
	Rank int
	// Flags are the flags (by name) the backend reads; localrun --exec hands
	// their values to the bootstraps, a flag ending in "-file" as an
	// absolute path.
	Flags []string
	// Environ are the environment variables it reads besides its flags (a
	// PIN, a master key, a library's configuration), handed on when set.
	Environ []string
}

// StoreBackend is what the settings know of a metadata store: the --store
// values it takes. Stores register themselves through store.Register,
// which calls RegisterStore.
type StoreBackend struct {
	// Name names the store in banners, logs and errors when Path is false.
	Name string
	// Rank places it in the lists users see (--help, errors): lowest
	// first, then by name.
	Rank int
	// Prefixes start the --store values it takes, e.g. "sqlite:".
	Prefixes []string
	// Usage are the forms shown to users, e.g. "sqlite:PATH"; --help
	// shows the first.
	Usage []string
	// Path is whether what follows the prefix is a file path, shown as is
	// by StoreName and made absolute for localrun's bootstraps. Otherwise
	// the value may hold a password and only Name is shown.
	Path bool
}

// Registry holds values by name, for the backends that register
// themselves from their init (here, in pkg/keys and in pkg/store). It is
// safe for concurrent use; its zero value is empty.
type Registry[T any] struct {
	mu     sync.Mutex
	byName map[string]T
}

// Register adds v as name. It panics when name is taken: registering
// twice is a programming error.
func (r *Registry[T]) Register(name string, v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.byName[name]; ok {
		panic(fmt.Sprintf("%q registered twice", name))
	}
	if r.byName == nil {
		r.byName = map[string]T{}
	}
	r.byName[name] = v
}

// Lookup returns the value registered as name.
func (r *Registry[T]) Lookup(name string) (T, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.byName[name]
	return v, ok
}

// All returns the values in the order cmp gives.
func (r *Registry[T]) All(cmp func(a, b T) int) []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.SortedFunc(maps.Values(r.byName), cmp)
}

var (
	custodyBackends Registry[CustodyBackend]
	storeBackends   Registry[StoreBackend]
	unlinked        Registry[Unlinked]
)

// Unlinked is a backend this binary was built without (build tags choose
// the backends a binary links: see pkg/backends/all). Knowing it lets the
// settings answer a configuration that names it with the build tag that
// links it, rather than with "want …" alone.
type Unlinked struct {
	// Store is whether it is a store (--store) rather than key custody
	// (--keys).
	Store bool
	// Name is its --keys value, or its name as a store.
	Name string
	// Prefixes start the --store values of a store, e.g. "sqlite:".
	Prefixes []string
	// Tag is the build tag that links it.
	Tag string
}

// RegisterUnlinked records a backend this binary was built without. It
// panics when the backend is already recorded.
func RegisterUnlinked(u Unlinked) {
	kind := "keys/"
	if u.Store {
		kind = "store/"
	}
	unlinked.Register(kind+u.Name, u)
}

// unlinkedFor returns the backend this binary was built without that a
// --store value (store) or a --keys value (otherwise) names.
func unlinkedFor(store bool, value string) (Unlinked, bool) {
	for _, u := range unlinked.All(func(a, b Unlinked) int { return strings.Compare(a.Name, b.Name) }) {
		if u.Store != store {
			continue
		}
		if !store && u.Name == value {
			return u, true
		}
		if store && slices.ContainsFunc(u.Prefixes, func(p string) bool { return strings.HasPrefix(value, p) }) {
			return u, true
		}
	}
	return Unlinked{}, false
}

// notLinkedError is the error for a configuration that names a backend
// this binary was built without: what it links, and the build tag that
// would link the one asked for.
func notLinkedError(flag, shown string, u Unlinked, want string) error {
	kind := "custody"
	if u.Store {
		kind = "store"
	}
	return fmt.Errorf("%s %s: this binary is built without the %s %s (it links %s); build it with -tags %s to link it (make lambda and make package: LAMBDA_BACKENDS; see pkg/backends/all)",
		flag, shown, u.Name, kind, want, u.Tag)
}

// RegisterCustody makes a custody backend known to the settings. It panics
// when the name is taken.
func RegisterCustody(b CustodyBackend) { custodyBackends.Register(b.Name, b) }

// RegisterStore makes a store known to the settings. It panics when the
// name or a prefix is taken.
func RegisterStore(b StoreBackend) {
	for _, p := range b.Prefixes {
		if o, _, ok := StoreFor(p); ok {
			panic(fmt.Sprintf("config: store %q takes prefix %q of store %q", b.Name, p, o.Name))
		}
	}
	storeBackends.Register(b.Name, b)
}

// CustodyBackends are the custody backends linked into this binary, in
// Rank order.
func CustodyBackends() []CustodyBackend {
	return custodyBackends.All(func(a, b CustodyBackend) int {
		return cmp.Or(cmp.Compare(a.Rank, b.Rank), strings.Compare(a.Name, b.Name))
	})
}

// StoreBackends are the stores linked into this binary, in Rank order.
func StoreBackends() []StoreBackend {
	return storeBackends.All(func(a, b StoreBackend) int {
		return cmp.Or(cmp.Compare(a.Rank, b.Rank), strings.Compare(a.Name, b.Name))
	})
}

// StoreFor returns the store that takes the --store value store, and the
// value without its prefix.
func StoreFor(store string) (StoreBackend, string, bool) {
	for _, b := range StoreBackends() {
		for _, p := range b.Prefixes {
			if rest, ok := strings.CutPrefix(store, p); ok {
				return b, rest, true
			}
		}
	}
	return StoreBackend{}, "", false
}

// custodyNames are the --keys values, e.g. "software, pkcs11 or barbican".
func custodyNames() string {
	var names []string
	for _, b := range CustodyBackends() {
		names = append(names, b.Name)
	}
	return orList(names)
}

// StoreUsage lists the --store forms, e.g. "sqlite:PATH or postgres://…";
// all of them, or the first of each store.
func StoreUsage(all bool) string {
	var forms []string
	for _, b := range StoreBackends() {
		if all {
			forms = append(forms, b.Usage...)
		} else if len(b.Usage) > 0 {
			forms = append(forms, b.Usage[0])
		}
	}
	return orList(forms)
}

// orList joins s as "a, b or c".
func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
