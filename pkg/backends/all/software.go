//go:build clusterkeys.keys.software || !(clusterkeys.keys.pkcs11 || clusterkeys.keys.barbican)

package all

import _ "github.com/clusterkeys/clusterkeys/pkg/keys/software" // --keys software
