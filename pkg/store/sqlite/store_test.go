package sqlite

import (
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/store/storetest"
)

// The store passes the contract every store passes.
func TestContract(t *testing.T) {
	storetest.Run(t, newStore)
}

// BenchmarkStore measures the writes of a sign and a rekey; the same
// benchmark runs on PostgreSQL (pkg/store/postgres).
func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, newStore)
}
