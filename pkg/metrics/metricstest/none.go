//go:build clusterkeys.metrics.none

package metricstest

import (
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/metrics"
)

const compiledOut = "metrics are compiled out (-tags clusterkeys.metrics.none): nothing to read"

// Value would read a metric of g; in this build it skips tb.
func Value(tb testing.TB, _ metrics.Gatherer, _ string, _ map[string]string) float64 {
	tb.Helper()
	tb.Skip(compiledOut)
	return 0
}

// CounterValue would read c; in this build it skips tb.
func CounterValue(tb testing.TB, _ metrics.Counter) float64 {
	tb.Helper()
	tb.Skip(compiledOut)
	return 0
}
