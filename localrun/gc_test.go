package main

import (
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		set  int // the percent in force before tuneGC
		want int
	}{
		{"no GOGC in the environment: serve's percent", nil, 100, serveGCPercent},
		{"a GOGC in the environment wins", map[string]string{"GOGC": "150"}, 150, 150},
		{"GOGC=off wins", map[string]string{"GOGC": "off"}, -1, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := debug.SetGCPercent(tt.set)
			t.Cleanup(func() { debug.SetGCPercent(old) })
			got := tuneGC(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if got != tt.want {
				t.Fatalf("tuneGC = %d, want %d", got, tt.want)
			}
			if now := debug.SetGCPercent(tt.set); now != tt.want {
				t.Fatalf("GC percent in force = %d, want %d", now, tt.want)
			}
		})
	}
}
