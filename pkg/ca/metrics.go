package ca

import (
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// metrics counts CA operations by outcome. The result label is "ok" (for
// creates "created" or "exists") or the stable error code, so its values
// are bounded.
type metrics struct {
	signs   *prometheus.CounterVec
	rekeys  *prometheus.CounterVec
	creates *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, log *slog.Logger) *metrics {
	m := &metrics{
		signs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clusterkeys", Subsystem: "ca", Name: "signs_total",
			Help: "Certificate signing requests handled, by profile and result.",
		}, []string{"profile", "result"}),
		rekeys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clusterkeys", Subsystem: "ca", Name: "rekeys_total",
			Help: "CA rekeys handled, by result.",
		}, []string{"result"}),
		creates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clusterkeys", Subsystem: "ca", Name: "creates_total",
			Help: "CA creations handled, by result.",
		}, []string{"result"}),
	}
	if reg == nil {
		return m
	}
	m.signs = register(reg, m.signs, log)
	m.rekeys = register(reg, m.rekeys, log)
	m.creates = register(reg, m.creates, log)
	return m
}

// register registers c, or reuses the collector already registered under
// its name (two Authorities sharing a registry share their counters).
func register(reg prometheus.Registerer, c *prometheus.CounterVec, log *slog.Logger) *prometheus.CounterVec {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
			return existing
		}
	}
	log.Error("cannot register CA metrics; they will not be exported", "err", err)
	return c
}

func result(err error) string {
	if err == nil {
		return "ok"
	}
	return api.ErrorFor(err).Code
}

func (m *metrics) sign(profile string, err error) {
	m.signs.WithLabelValues(profile, result(err)).Inc()
}

func (m *metrics) rekey(err error) { m.rekeys.WithLabelValues(result(err)).Inc() }

func (m *metrics) create(created bool, err error) {
	r := result(err)
	if err == nil {
		r = "exists"
		if created {
			r = "created"
		}
	}
	m.creates.WithLabelValues(r).Inc()
}
