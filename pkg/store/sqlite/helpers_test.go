package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/store/storetest"
)

// t0 is a fixed instant with nanoseconds, in a zone other than UTC: SQLite
// keeps times to the nanosecond (the contract asks for microseconds).
var t0 = time.Date(2026, 11, 25, 7, 30, 15, 123456789, time.FixedZone("CET", 3600))

// openTest opens a fresh store in t's temporary directory, closed at cleanup.
func openTest(t testing.TB) *DB {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "clusterkeys.db"))
}

// openAt opens the store at path, closed at cleanup.
func openAt(t testing.TB, path string) *DB {
	t.Helper()
	d, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

// newStore is the storetest.NewStore of SQLite: a new file, and further
// handles on that file as further instances.
func newStore(t testing.TB) (storetest.Store, func() storetest.Store) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clusterkeys.db")
	return openAt(t, path), func() storetest.Store { return openAt(t, path) }
}

// createCluster stores storetest.Cluster(name) with its first generation.
func createCluster(t testing.TB, d *DB, name string) {
	t.Helper()
	storetest.CreateCluster(t, d, name)
}
