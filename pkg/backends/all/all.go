// Package all links the store and custody backends that the build tags
// choose: a binary that imports it (blank) can open those. Each backend
// registers itself from its init (store.Register, keys.Register); each one
// left out is recorded with config.RegisterUnlinked, so that a
// configuration naming it fails at start with the build tag that links it.
//
// Built without tags, a binary links every backend (localrun, the KMS
// shim, the tests). A tag of a group keeps only the backends of that group
// whose tags are given; the groups are independent:
//
//	stores:  clusterkeys.store.sqlite, clusterkeys.store.postgres
//	custody: clusterkeys.keys.software, clusterkeys.keys.pkcs11, clusterkeys.keys.barbican
//
// For example -tags 'clusterkeys.store.postgres clusterkeys.keys.software'
// links PostgreSQL and software custody only; that is what `make lambda`
// and `make package` build by default (LAMBDA_BACKENDS in the Makefile),
// as the SAM deployment uses them.
package all

import "github.com/clusterkeys/clusterkeys/pkg/config"

// Backend is one backend this package can link: what config records of it
// when it is left out (its name, a store's prefixes, the build tag that
// chooses it), and the package that implements it.
type Backend struct {
	config.Unlinked
	// Package is the package that implements it.
	Package string
}

// Backends are every backend of clusterkeys, linked or not.
var Backends = []Backend{
	{config.Unlinked{Store: true, Name: "sqlite", Prefixes: []string{"sqlite:"}, Tag: "clusterkeys.store.sqlite"}, "github.com/clusterkeys/clusterkeys/pkg/store/sqlite"},
	{config.Unlinked{Store: true, Name: "postgres", Prefixes: []string{"postgres://", "postgresql://"}, Tag: "clusterkeys.store.postgres"}, "github.com/clusterkeys/clusterkeys/pkg/store/postgres"},
	{config.Unlinked{Name: "software", Tag: "clusterkeys.keys.software"}, "github.com/clusterkeys/clusterkeys/pkg/keys/software"},
	{config.Unlinked{Name: "pkcs11", Tag: "clusterkeys.keys.pkcs11"}, "github.com/clusterkeys/clusterkeys/pkg/keys/pkcs11"},
	{config.Unlinked{Name: "barbican", Tag: "clusterkeys.keys.barbican"}, "github.com/clusterkeys/clusterkeys/pkg/keys/barbican"},
}

// lookup returns the backend called name, a store when store.
func lookup(store bool, name string) Backend {
	for _, b := range Backends {
		if b.Store == store && b.Name == name {
			return b
		}
	}
	panic("backends/all: no backend " + name)
}

// unlinked is what config.RegisterUnlinked records of b.
func (b Backend) unlinked() config.Unlinked { return b.Unlinked }
