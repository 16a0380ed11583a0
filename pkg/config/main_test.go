package config

// The backends as they register themselves (keys.Register, store.Register)
// in a binary that links them all: a test fixture, as this package's tests
// cannot import the backends (they import it). pkg/backends' tests check
// that the real registrations give the same lists and messages.
func init() {
	RegisterCustody(CustodyBackend{Name: "software", Rank: 1})
	RegisterCustody(CustodyBackend{Name: "pkcs11", Rank: 2})
	RegisterCustody(CustodyBackend{Name: "barbican", Rank: 3})
	RegisterStore(StoreBackend{Name: "sqlite", Rank: 1, Prefixes: []string{"sqlite:"}, Usage: []string{"sqlite:PATH"}, Path: true})
	RegisterStore(StoreBackend{Name: "postgres", Rank: 2, Prefixes: []string{"postgres://", "postgresql://"}, Usage: []string{"postgres://…", "postgresql://…"}})
	// Backends this test binary is "built without" (pkg/backends/all
	// records those its build tags leave out).
	RegisterUnlinked(Unlinked{Name: "hsm-x", Tag: "clusterkeys.keys.hsm-x"})
	RegisterUnlinked(Unlinked{Store: true, Name: "etcd", Prefixes: []string{"etcd://"}, Tag: "clusterkeys.store.etcd"})
}
