package postgres

import (
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/store/storetest"
)

// The store serves every function that needs one.
var _ storetest.Store = (*DB)(nil)

// The store passes the contract every store passes.
func TestContract(t *testing.T) {
	needServer(t)
	storetest.Run(t, newStore)
}

// BenchmarkStore measures the writes of a sign and a rekey; the same
// benchmark runs on SQLite (pkg/store/sqlite).
func BenchmarkStore(b *testing.B) {
	needServer(b)
	storetest.Benchmark(b, newStore)
}
