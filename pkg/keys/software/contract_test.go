package software

import (
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/keys/keystest"
)

// TestContract holds software custody over the real SQLite store to the
// custody contract.
func TestContract(t *testing.T) {
	keystest.Run(t, func(t *testing.T) keys.Custody {
		c, err := New(randomKey(t), emptyStore(t))
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}
