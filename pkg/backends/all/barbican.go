//go:build clusterkeys.keys.barbican || !(clusterkeys.keys.software || clusterkeys.keys.pkcs11)

package all

import _ "github.com/clusterkeys/clusterkeys/pkg/keys/barbican" // --keys barbican
