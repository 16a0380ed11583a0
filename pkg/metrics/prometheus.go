//go:build !clusterkeys.metrics.none

package metrics

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Enabled reports whether this build records metrics: true by default,
// false with the tag clusterkeys.metrics.none.
const Enabled = true

// Collector is anything that can be registered: a counter, gauge or
// histogram, or a vector of them.
type Collector = prometheus.Collector

// Counter is a value that only goes up.
type Counter = prometheus.Counter

// CounterVec is a family of counters told apart by label values.
type CounterVec = prometheus.CounterVec

// CounterOpts names a counter and its help text.
type CounterOpts = prometheus.CounterOpts

// Gauge is a value that goes up and down.
type Gauge = prometheus.Gauge

// GaugeVec is a family of gauges told apart by label values.
type GaugeVec = prometheus.GaugeVec

// GaugeOpts names a gauge and its help text.
type GaugeOpts = prometheus.GaugeOpts

// Observer records one observation, e.g. a latency into a histogram.
type Observer = prometheus.Observer

// HistogramVec is a family of histograms told apart by label values.
type HistogramVec = prometheus.HistogramVec

// HistogramOpts names a histogram, its help text and its buckets.
type HistogramOpts = prometheus.HistogramOpts

// Labels are label names and their values.
type Labels = prometheus.Labels

// Registerer is where collectors are registered, e.g. a *Registry.
type Registerer = prometheus.Registerer

// Gatherer is what Handler exposes, e.g. a *Registry.
type Gatherer = prometheus.Gatherer

// Registry is a Registerer and a Gatherer: the collectors a server
// exposes on /metrics.
type Registry = prometheus.Registry

// NewCounter returns a counter named by opts.
func NewCounter(opts CounterOpts) Counter { return prometheus.NewCounter(opts) }

// NewCounterVec returns a family of counters named by opts with the given
// label names.
func NewCounterVec(opts CounterOpts, labelNames []string) *CounterVec {
	return prometheus.NewCounterVec(opts, labelNames)
}

// NewGauge returns a gauge named by opts.
func NewGauge(opts GaugeOpts) Gauge { return prometheus.NewGauge(opts) }

// NewGaugeVec returns a family of gauges named by opts with the given
// label names.
func NewGaugeVec(opts GaugeOpts, labelNames []string) *GaugeVec {
	return prometheus.NewGaugeVec(opts, labelNames)
}

// NewHistogramVec returns a family of histograms named by opts with the
// given label names.
func NewHistogramVec(opts HistogramOpts, labelNames []string) *HistogramVec {
	return prometheus.NewHistogramVec(opts, labelNames)
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return prometheus.NewRegistry() }

// NewProcessRegistry returns a registry holding the Go runtime's and the
// process's collectors (go_*, process_*), for a long-running daemon.
func NewProcessRegistry() *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves what g gathers in the Prometheus text exposition format,
// for GET /metrics.
func Handler(g Gatherer) http.Handler { return promhttp.HandlerFor(g, promhttp.HandlerOpts{}) }

// Register registers c with reg and returns it. When a collector with the
// same descriptors is already registered and has c's type, Register returns
// that one instead, so the caller counts into the exported series. A nil
// reg registers nothing and returns c. Any other failure returns c, which
// then counts unexported, and the error.
func Register[T Collector](reg Registerer, c T) (T, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing, nil
		}
	}
	return c, err
}
