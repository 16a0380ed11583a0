package need

import (
	"runtime"
	"strings"
	"testing"
)

// recorder is a testing.TB that records how a test ended instead of
// ending the real one.
type recorder struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (r *recorder) Helper() {}

// Fatal and Skip end the calling goroutine, as testing's do.
func (r *recorder) Fatal(args ...any) { r.failed, r.msg = true, args[0].(string); runtime.Goexit() }
func (r *recorder) Skip(args ...any)  { r.skipped, r.msg = true, args[0].(string); runtime.Goexit() }

// run calls f with a recorder on a goroutine of its own and returns the
// recorder once f has returned or ended the goroutine.
func run(t *testing.T, f func(tb testing.TB)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

func TestMissing(t *testing.T) {
	for _, tt := range []struct {
		name, ci           string
		wantFail, wantSkip bool
	}{
		{"should fail under CI=true", "true", true, false},
		{"should skip when CI is unset", "", false, true},
		{"should skip when CI is not true", "false", false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			r := run(t, func(tb testing.TB) { Missing(tb, "softhsm2-util is missing: apt-get install softhsm2") })
			if r.failed != tt.wantFail || r.skipped != tt.wantSkip {
				t.Fatalf("failed %v skipped %v, want %v %v", r.failed, r.skipped, tt.wantFail, tt.wantSkip)
			}
			if !strings.Contains(r.msg, "apt-get install softhsm2") {
				t.Fatalf("message %q does not say what to install", r.msg)
			}
		})
	}
}

func TestTool(t *testing.T) {
	t.Run("should return the path of a program on PATH", func(t *testing.T) {
		var p string
		r := run(t, func(tb testing.TB) { p = Tool(tb, "go", "install Go") })
		if p == "" || r.failed || r.skipped {
			t.Fatalf("Tool(go) = %q, failed %v skipped %v", p, r.failed, r.skipped)
		}
	})
	t.Run("should name the program and its install command when missing", func(t *testing.T) {
		t.Setenv("CI", "")
		r := run(t, func(tb testing.TB) { Tool(tb, "no-such-program-clusterkeys", "apt-get install nothing") })
		if !r.skipped || r.msg != "no-such-program-clusterkeys is missing: apt-get install nothing" {
			t.Fatalf("skipped %v, message %q", r.skipped, r.msg)
		}
	})
}
