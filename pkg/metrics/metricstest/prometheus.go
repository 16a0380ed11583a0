//go:build !clusterkeys.metrics.none

package metricstest

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/clusterkeys/clusterkeys/pkg/metrics"
)

// Value gathers g and returns the sum, over the series of the metric name
// whose labels include labels, of their values: a counter's or gauge's
// value, a histogram's sample count. It fails tb when g has no metric name
// at all (a vector with no series yet is not gathered).
func Value(tb testing.TB, g metrics.Gatherer, name string, labels map[string]string) float64 {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
		return sum
	}
	tb.Fatalf("metric %s is not gathered", name)
	return 0
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// CounterValue returns c's value.
func CounterValue(tb testing.TB, c metrics.Counter) float64 {
	tb.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		tb.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
