//go:build !clusterkeys.metrics.none

package metrics

import (
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
)

func newCounter(help string) *CounterVec {
	return NewCounterVec(CounterOpts{Name: "clusterkeys_test_total", Help: help}, []string{"result"})
}

func TestRegister(t *testing.T) {
	t.Run("should register a new collector and return it", func(t *testing.T) {
		reg := NewRegistry()
		c := newCounter("h")
		got, err := Register(reg, c)
		if err != nil || got != c {
			t.Fatalf("Register = %p, %v; want %p, nil", got, err, c)
		}
	})
	t.Run("should return the collector already registered under the same name", func(t *testing.T) {
		reg := NewRegistry()
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
		reg := NewRegistry()
		_, _ = Register(reg, newCounter("h"))
		c := newCounter("another help text")
		got, err := Register(reg, c)
		if err == nil || got != c {
			t.Fatalf("Register = %p, %v; want %p and an error", got, err, c)
		}
	})
}

func TestHandler(t *testing.T) {
	t.Run("should serve the Prometheus text exposition of what is registered", func(t *testing.T) {
		reg := NewRegistry()
		c, _ := Register(reg, newCounter("Test counts."))
		c.WithLabelValues("ok").Add(2)
		rec := httptest.NewRecorder()
		Handler(reg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		want := "# HELP clusterkeys_test_total Test counts.\n# TYPE clusterkeys_test_total counter\nclusterkeys_test_total{result=\"ok\"} 2\n"
		if rec.Code != http.StatusOK || rec.Body.String() != want {
			t.Errorf("GET /metrics = %d\n%s\nwant 200\n%s", rec.Code, rec.Body, want)
		}
	})
	t.Run("should serve the Go runtime's and the process's metrics from a process registry", func(t *testing.T) {
		rec := httptest.NewRecorder()
		Handler(NewProcessRegistry()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		for _, want := range []string{"\ngo_goroutines ", "\nprocess_start_time_seconds "} {
			if !strings.Contains(rec.Body.String(), want) {
				t.Errorf("GET /metrics lacks %q", want)
			}
		}
	})
}

// TestNoneBuild runs this package's tests in the no-op build
// (clusterkeys.metrics.none), which the Lambda bootstraps use, and checks
// that it links no Prometheus package.
func TestNoneBuild(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH, so the no-op build cannot be tested:", err)
	}
	if !Enabled {
		t.Fatal("Enabled = false in the default build")
	}
	out, err := exec.Command(gobin, "test", "-count=1", "-tags", "clusterkeys.metrics.none", "-run", "^TestNone$", "-v", ".").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestNone ") {
		t.Fatalf("go test -tags clusterkeys.metrics.none: %v\n%s", err, out)
	}
	out, err = exec.Command(gobin, "list", "-deps", "-tags", "clusterkeys.metrics.none", ".", "./metricstest").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/prometheus/") {
			t.Errorf("the no-op build links %s", dep)
		}
	}
}
