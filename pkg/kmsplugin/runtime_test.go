package kmsplugin_test

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/kmsplugin"
)

// TestTuneRuntime checks that the shim's runtime defaults apply only where
// the environment sets nothing: an operator's GOMAXPROCS or GOGC wins.
func TestTuneRuntime(t *testing.T) {
	procs0 := runtime.GOMAXPROCS(0)
	gc0 := debug.SetGCPercent(100)
	debug.SetGCPercent(gc0)
	t.Cleanup(func() {
		runtime.GOMAXPROCS(procs0)
		debug.SetGCPercent(gc0)
	})
	tests := []struct {
		name      string
		env       map[string]string
		wantProcs int
		wantGC    int
	}{
		{"nothing set: the shim's defaults", nil, kmsplugin.DefaultMaxProcs, kmsplugin.DefaultGCPercent},
		{"GOMAXPROCS set: kept", map[string]string{"GOMAXPROCS": "3"}, 3, kmsplugin.DefaultGCPercent},
		{"GOGC set: kept", map[string]string{"GOGC": "150"}, kmsplugin.DefaultMaxProcs, 150},
		{"both set: both kept", map[string]string{"GOMAXPROCS": "3", "GOGC": "150"}, 3, 150},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// What the runtime would have applied at start from the
			// environment.
			runtime.GOMAXPROCS(3)
			debug.SetGCPercent(150)
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			procs, gc := kmsplugin.TuneRuntime(lookup)
			if procs != tt.wantProcs || runtime.GOMAXPROCS(0) != tt.wantProcs {
				t.Errorf("GOMAXPROCS = %d (returned %d), want %d", runtime.GOMAXPROCS(0), procs, tt.wantProcs)
			}
			if cur := debug.SetGCPercent(gc); gc != tt.wantGC || cur != tt.wantGC {
				t.Errorf("GC percent = %d (returned %d), want %d", cur, gc, tt.wantGC)
			}
		})
	}
}
