//go:build !(clusterkeys.keys.pkcs11 || !(clusterkeys.keys.software || clusterkeys.keys.barbican))

package all

import "github.com/clusterkeys/clusterkeys/pkg/config"

func init() { config.RegisterUnlinked(lookup(false, "pkcs11").unlinked()) }
