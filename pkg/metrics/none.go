//go:build clusterkeys.metrics.none

package metrics

import "net/http"

// Enabled reports whether this build records metrics: true by default,
// false with the tag clusterkeys.metrics.none.
const Enabled = false

// Collector is anything that can be registered: a counter, gauge or
// histogram, or a vector of them. In this build none records anything.
type Collector interface{ collector() }

// Counter is a value that only goes up.
type Counter interface {
	Collector
	Inc()
	Add(float64)
}

// Gauge is a value that goes up and down.
type Gauge interface {
	Collector
	Set(float64)
	Inc()
	Dec()
	Add(float64)
	Sub(float64)
	SetToCurrentTime()
}

// Observer records one observation, e.g. a latency into a histogram.
type Observer interface {
	Observe(float64)
}

// nop is every counter, gauge and observer of this build.
type nop struct{}

func (nop) collector()        {}
func (nop) Inc()              {}
func (nop) Dec()              {}
func (nop) Add(float64)       {}
func (nop) Sub(float64)       {}
func (nop) Set(float64)       {}
func (nop) SetToCurrentTime() {}
func (nop) Observe(float64)   {}

// Labels are label names and their values.
type Labels map[string]string

// Opts name a collector and give its help text.
type Opts struct {
	Namespace, Subsystem, Name, Help string
	ConstLabels                      Labels
}

// CounterOpts names a counter and its help text.
type CounterOpts Opts

// GaugeOpts names a gauge and its help text.
type GaugeOpts Opts

// HistogramOpts names a histogram, its help text and its buckets.
type HistogramOpts struct {
	Namespace, Subsystem, Name, Help string
	ConstLabels                      Labels
	Buckets                          []float64
}

// CounterVec is a family of counters told apart by label values.
type CounterVec struct{}

func (*CounterVec) collector() {}

// WithLabelValues returns the counter of the given label values.
func (*CounterVec) WithLabelValues(...string) Counter { return nop{} }

// With returns the counter of the given labels.
func (*CounterVec) With(Labels) Counter { return nop{} }

// GaugeVec is a family of gauges told apart by label values.
type GaugeVec struct{}

func (*GaugeVec) collector() {}

// WithLabelValues returns the gauge of the given label values.
func (*GaugeVec) WithLabelValues(...string) Gauge { return nop{} }

// With returns the gauge of the given labels.
func (*GaugeVec) With(Labels) Gauge { return nop{} }

// HistogramVec is a family of histograms told apart by label values.
type HistogramVec struct{}

func (*HistogramVec) collector() {}

// WithLabelValues returns the histogram of the given label values.
func (*HistogramVec) WithLabelValues(...string) Observer { return nop{} }

// With returns the histogram of the given labels.
func (*HistogramVec) With(Labels) Observer { return nop{} }

// NewCounter returns a counter named by opts.
func NewCounter(CounterOpts) Counter { return nop{} }

// NewCounterVec returns a family of counters named by opts with the given
// label names.
func NewCounterVec(CounterOpts, []string) *CounterVec { return &CounterVec{} }

// NewGauge returns a gauge named by opts.
func NewGauge(GaugeOpts) Gauge { return nop{} }

// NewGaugeVec returns a family of gauges named by opts with the given
// label names.
func NewGaugeVec(GaugeOpts, []string) *GaugeVec { return &GaugeVec{} }

// NewHistogramVec returns a family of histograms named by opts with the
// given label names.
func NewHistogramVec(HistogramOpts, []string) *HistogramVec { return &HistogramVec{} }

// Registerer is where collectors are registered, e.g. a *Registry.
type Registerer interface {
	Register(Collector) error
	MustRegister(...Collector)
	Unregister(Collector) bool
}

// Gatherer is what Handler exposes, e.g. a *Registry.
type Gatherer interface{ gatherer() }

// Registry is a Registerer and a Gatherer: the collectors a server
// exposes on /metrics. In this build it keeps none.
type Registry struct{}

// Register registers nothing and returns nil.
func (*Registry) Register(Collector) error { return nil }

// MustRegister registers nothing.
func (*Registry) MustRegister(...Collector) {}

// Unregister unregisters nothing and returns false.
func (*Registry) Unregister(Collector) bool { return false }

func (*Registry) gatherer() {}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

// NewProcessRegistry returns a registry holding the Go runtime's and the
// process's collectors, for a long-running daemon; in this build, none.
func NewProcessRegistry() *Registry { return &Registry{} }

// Handler serves what g gathers in the Prometheus text exposition format,
// for GET /metrics: in this build, an empty exposition (200, no series).
func Handler(Gatherer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.WriteHeader(http.StatusOK)
	})
}

// Register registers c with reg and returns it. In this build it registers
// nothing and returns c.
func Register[T Collector](_ Registerer, c T) (T, error) { return c, nil }
