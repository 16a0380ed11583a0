package store

import "testing"

func TestLapseProbesLookOncePerClusterAndInterval(t *testing.T) {
	var p LapseProbes
	steps := []struct {
		cluster string
		want    bool
	}{
		{"a", true},  // never looked
		{"a", false}, // looked just now
		{"b", true},  // each cluster has its own time
		{"b", false},
		{"a", false},
	}
	for i, s := range steps {
		if got := p.Due(s.cluster); got != s.want {
			t.Fatalf("step %d: Due(%q) = %v, want %v", i, s.cluster, got, s.want)
		}
	}
}
