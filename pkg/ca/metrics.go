package ca

import (
	"log/slog"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	promreg "github.com/clusterkeys/clusterkeys/pkg/metrics"
)

// metrics counts CA operations by outcome. The result label is "ok" (for
// creates "created" or "exists") or the stable error code, so its values
// are bounded.
type metrics struct {
	signs   *promreg.CounterVec
	rekeys  *promreg.CounterVec
	creates *promreg.CounterVec
}

func newMetrics(reg promreg.Registerer, log *slog.Logger) *metrics {
	m := &metrics{
		signs: promreg.NewCounterVec(promreg.CounterOpts{
			Namespace: "clusterkeys", Subsystem: "ca", Name: "signs_total",
			Help: "Certificate signing requests handled, by profile and result.",
		}, []string{"profile", "result"}),
		rekeys: promreg.NewCounterVec(promreg.CounterOpts{
			Namespace: "clusterkeys", Subsystem: "ca", Name: "rekeys_total",
			Help: "CA rekeys handled, by result.",
		}, []string{"result"}),
		creates: promreg.NewCounterVec(promreg.CounterOpts{
			Namespace: "clusterkeys", Subsystem: "ca", Name: "creates_total",
			Help: "CA creations handled, by result.",
		}, []string{"result"}),
	}
	if reg == nil {
		return m
	}
	// Two Authorities sharing a registry share their counters.
	for _, c := range []**promreg.CounterVec{&m.signs, &m.rekeys, &m.creates} {
		var err error
		if *c, err = promreg.Register(reg, *c); err != nil {
			log.Error("cannot register CA metrics; they will not be exported", "err", err)
		}
	}
	return m
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
