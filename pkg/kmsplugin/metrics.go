package kmsplugin

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/clusterkeys/clusterkeys/pkg/metrics"
)

// Metrics are the shim's Prometheus collectors:
//
//	clusterkeys_kms_operations_total{op,code}         Encrypt, Decrypt and Status calls by gRPC code
//	clusterkeys_kms_operation_duration_seconds{op}    their latency
//	clusterkeys_kms_errors_total{op}                  failed calls
//	clusterkeys_kms_connections_total                 gRPC connections accepted (kube-apiserver (re)connects)
//	clusterkeys_kms_custody_recoveries_total          custody back to healthy after a failed Status
//	clusterkeys_kms_healthy                           1 when the last Status round trip succeeded
type Metrics struct {
	ops         *metrics.CounterVec
	latency     *metrics.HistogramVec
	errors      *metrics.CounterVec
	connections metrics.Counter
	recoveries  metrics.Counter
	healthy     metrics.Gauge

	// The children of the successful calls of each operation, resolved
	// once: WithLabelValues hashes and locks on every call.
	okOps     map[string]metrics.Counter
	opLatency map[string]metrics.Observer
}

// operations are the op label values of the KMS v2 calls.
var operations = []string{"encrypt", "decrypt", "status"}

// NewMetrics creates the collectors and registers them with reg (none when
// reg is nil).
func NewMetrics(reg metrics.Registerer) (*Metrics, error) {
	m := &Metrics{
		ops: metrics.NewCounterVec(metrics.CounterOpts{
			Name: "clusterkeys_kms_operations_total",
			Help: "KMS v2 calls by operation and gRPC status code.",
		}, []string{"op", "code"}),
		latency: metrics.NewHistogramVec(metrics.HistogramOpts{
			Name:    "clusterkeys_kms_operation_duration_seconds",
			Help:    "Latency of KMS v2 calls inside the shim.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"op"}),
		errors: metrics.NewCounterVec(metrics.CounterOpts{
			Name: "clusterkeys_kms_errors_total",
			Help: "Failed KMS v2 calls by operation.",
		}, []string{"op"}),
		connections: metrics.NewCounter(metrics.CounterOpts{
			Name: "clusterkeys_kms_connections_total",
			Help: "gRPC connections accepted on the KMS socket; more than one per kube-apiserver means reconnects.",
		}),
		recoveries: metrics.NewCounter(metrics.CounterOpts{
			Name: "clusterkeys_kms_custody_recoveries_total",
			Help: "Times key custody became healthy again after a failed Status round trip.",
		}),
		healthy: metrics.NewGauge(metrics.GaugeOpts{
			Name: "clusterkeys_kms_healthy",
			Help: "1 when the last Status round trip through key custody succeeded, else 0.",
		}),
	}
	m.okOps = make(map[string]metrics.Counter, len(operations))
	m.opLatency = make(map[string]metrics.Observer, len(operations))
	for _, op := range operations {
		m.okOps[op] = m.ops.WithLabelValues(op, codes.OK.String())
		m.opLatency[op] = m.latency.WithLabelValues(op)
	}
	if reg != nil {
		for _, c := range []metrics.Collector{m.ops, m.latency, m.errors, m.connections, m.recoveries, m.healthy} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register kms metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *Metrics) observe(op string, d time.Duration, err error) {
	if lat, ok := m.opLatency[op]; ok {
		lat.Observe(d.Seconds())
	} else {
		m.latency.WithLabelValues(op).Observe(d.Seconds())
	}
	if err == nil {
		if c, ok := m.okOps[op]; ok {
			c.Inc()
			return
		}
	}
	m.ops.WithLabelValues(op, status.Code(err).String()).Inc()
	if err != nil {
		m.errors.WithLabelValues(op).Inc()
	}
}

// countingListener counts the connections it accepts. It replaces a gRPC
// stats handler, which grpc-go calls several times for every RPC (and
// allocates an event for each) when only connections are counted.
type countingListener struct {
	net.Listener
	m *Metrics
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil && l.m != nil {
		l.m.connections.Inc()
	}
	return c, err
}

// ServeMetrics serves on addr (a TCP address such as 127.0.0.1:9464) until
// ctx ends: GET /metrics (g), GET /livez (200 while the process runs) and,
// when health is not nil, GET /healthz (200 when health returns nil, else
// 503; the error text is not sent). It returns once the listener is open;
// the returned function stops the server.
func ServeMetrics(ctx context.Context, addr string, g metrics.Gatherer, health func(context.Context) error) (net.Addr, func(context.Context) error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics listener %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(g))
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	if health != nil {
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
			hctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			defer cancel()
			if err := health(hctx); err != nil {
				http.Error(w, "unhealthy: key custody round trip failed", http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, "ok\n")
		})
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr(), srv.Shutdown, nil
}
