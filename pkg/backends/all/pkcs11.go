//go:build clusterkeys.keys.pkcs11 || !(clusterkeys.keys.software || clusterkeys.keys.barbican)

package all

import _ "github.com/clusterkeys/clusterkeys/pkg/keys/pkcs11" // --keys pkcs11 (cgo)
