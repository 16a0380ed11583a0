package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func newCounter(help string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clusterkeys_test_total", Help: help}, []string{"result"})
}

func TestRegister(t *testing.T) {
	t.Run("should register a new collector and return it", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		c := newCounter("h")
		got, err := Register(reg, c)
		if err != nil || got != c {
			t.Fatalf("Register = %p, %v; want %p, nil", got, err, c)
		}
	})
	t.Run("should return the collector already registered under the same name", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		first, _ := Register(reg, newCounter("h"))
		second, err := Register(reg, newCounter("h"))
		if err != nil || second != first {
			t.Fatalf("second Register = %p, %v; want the first %p", second, err, first)
		}
	})
	t.Run("should register nothing with a nil registerer", func(t *testing.T) {
		c := newCounter("h")
		if got, err := Register(nil, c); err != nil || got != c {
			t.Fatalf("Register(nil) = %p, %v", got, err)
		}
	})
	t.Run("should report a conflicting registration and return the new collector", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		_, _ = Register(reg, newCounter("h"))
		c := newCounter("another help text")
		got, err := Register(reg, c)
		if err == nil || got != c {
			t.Fatalf("Register = %p, %v; want %p and an error", got, err, c)
		}
	})
}
