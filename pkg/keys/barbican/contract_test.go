package barbican

import (
	"crypto/rand"
	"path/filepath"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/keys/keystest"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// TestContract holds Barbican custody (Debian's Barbican, one server for
// the run) to the custody contract; each case gets its own project, so it
// starts with no secrets, and its own SQLite store for the ref mapping.
func TestContract(t *testing.T) {
	endpoint := startBarbican(t)
	keystest.Run(t, func(t *testing.T) keys.Custody {
		db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "clusterkeys.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		c, err := Open(Config{Endpoint: endpoint, Project: "keystest-" + rand.Text()[:10]}, db)
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}
