package config

import (
	"cmp"
	"fmt"
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

var registry struct {
	sync.Mutex
	custody []CustodyBackend
	stores  []StoreBackend
}

// RegisterCustody makes a custody backend known to the settings. It panics
// when the name is taken, as registering twice is a programming error.
func RegisterCustody(b CustodyBackend) {
	registry.Lock()
	defer registry.Unlock()
	if slices.ContainsFunc(registry.custody, func(o CustodyBackend) bool { return o.Name == b.Name }) {
		panic(fmt.Sprintf("config: custody backend %q registered twice", b.Name))
	}
	registry.custody = append(registry.custody, b)
	slices.SortFunc(registry.custody, func(a, b CustodyBackend) int {
		return cmp.Or(cmp.Compare(a.Rank, b.Rank), strings.Compare(a.Name, b.Name))
	})
}

// RegisterStore makes a store known to the settings. It panics when the
// name or a prefix is taken.
func RegisterStore(b StoreBackend) {
	registry.Lock()
	defer registry.Unlock()
	for _, o := range registry.stores {
		if o.Name == b.Name || slices.ContainsFunc(b.Prefixes, func(p string) bool { return slices.Contains(o.Prefixes, p) }) {
			panic(fmt.Sprintf("config: store %q registered twice", b.Name))
		}
	}
	registry.stores = append(registry.stores, b)
	slices.SortFunc(registry.stores, func(a, b StoreBackend) int {
		return cmp.Or(cmp.Compare(a.Rank, b.Rank), strings.Compare(a.Name, b.Name))
	})
}

// CustodyBackends are the custody backends linked into this binary, in
// Rank order.
func CustodyBackends() []CustodyBackend {
	registry.Lock()
	defer registry.Unlock()
	return slices.Clone(registry.custody)
}

// StoreBackends are the stores linked into this binary, in Rank order.
func StoreBackends() []StoreBackend {
	registry.Lock()
	defer registry.Unlock()
	return slices.Clone(registry.stores)
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
