//go:build !(clusterkeys.keys.barbican || !(clusterkeys.keys.software || clusterkeys.keys.pkcs11))

package all

import "github.com/clusterkeys/clusterkeys/pkg/config"

func init() { config.RegisterUnlinked(lookup(false, "barbican").unlinked()) }
