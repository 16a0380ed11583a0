// Package all links every store and custody backend: a binary that
// imports it (blank) can open any of them. Each backend registers itself
// from its init (store.Register, keys.Register); a binary that must link
// less imports the backends it wants instead.
package all

import (
	// Custody backends: --keys software, pkcs11, barbican.
	_ "github.com/clusterkeys/clusterkeys/pkg/keys/barbican"
	_ "github.com/clusterkeys/clusterkeys/pkg/keys/pkcs11"
	_ "github.com/clusterkeys/clusterkeys/pkg/keys/software"

	// Stores: --store sqlite:PATH, postgres://….
	_ "github.com/clusterkeys/clusterkeys/pkg/store/postgres"
	_ "github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)
