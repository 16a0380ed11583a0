//go:build clusterkeys.metrics.none

package metrics

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestNone runs only in the no-op build (TestNoneBuild runs it from the
// default one).
func TestNone(t *testing.T) {
	t.Run("should take every call of the collectors and record nothing", func(t *testing.T) {
		reg := NewRegistry()
		c, err := Register(reg, NewCounterVec(CounterOpts{Name: "clusterkeys_test_total", Help: "h"}, []string{"result"}))
		if err != nil || c == nil {
			t.Fatalf("Register = %v, %v", c, err)
		}
		c.WithLabelValues("ok").Inc()
		NewGaugeVec(GaugeOpts{Name: "g"}, []string{"l"}).WithLabelValues("x").Set(1)
		NewHistogramVec(HistogramOpts{Name: "h", Buckets: []float64{1}}, []string{"l"}).WithLabelValues("x").Observe(1)
		g := NewGauge(GaugeOpts{Name: "g2"})
		g.Inc()
		g.Dec()
		NewCounter(CounterOpts{Name: "c2"}).Add(2)
		if reg.Unregister(c) {
			t.Error("Unregister = true, want false: nothing is registered")
		}
	})
	t.Run("should answer /metrics with an empty exposition", func(t *testing.T) {
		rec := httptest.NewRecorder()
		Handler(NewProcessRegistry()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8" {
			t.Errorf("GET /metrics = %d %q %q, want 200, text/plain and no body", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
	})
	if Enabled {
		t.Error("Enabled = true in the no-op build")
	}
}
