package pkcs11

import (
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/keys/keystest"
)

// TestContract holds PKCS#11 custody on a fresh SoftHSM2 token per case to
// the custody contract.
func TestContract(t *testing.T) {
	keystest.Run(t, func(t *testing.T) keys.Custody {
		return openCustody(t, newToken(t), Options{})
	})
}
