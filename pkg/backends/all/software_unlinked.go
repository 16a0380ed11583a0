//go:build !(clusterkeys.keys.software || !(clusterkeys.keys.pkcs11 || clusterkeys.keys.barbican))

package all

import "github.com/clusterkeys/clusterkeys/pkg/config"

func init() { config.RegisterUnlinked(lookup(false, "software").unlinked()) }
