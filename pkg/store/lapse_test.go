package store

import "testing"

func TestLapseProbesLookOncePerClusterAndInterval(t *testing.T) {
	var p LapseProbes
	steps := []struct {
		cluster string
		// looked, when not empty, records the look as leaving a large
		// backlog ("large") or not ("small").
		looked           string
		wantDue, wantBig bool
	}{
		{"a", "large", true, false}, // never looked
		{"a", "", false, true},      // looked just now, left it large
		{"b", "small", true, false}, // each cluster has its own
		{"b", "", false, false},
		{"a", "", false, true},
	}
	for i, s := range steps {
		due, large := p.Due(s.cluster)
		if due != s.wantDue || large != s.wantBig {
			t.Fatalf("step %d: Due(%q) = %v, %v; want %v, %v", i, s.cluster, due, large, s.wantDue, s.wantBig)
		}
		if s.looked != "" {
			p.Looked(s.cluster, s.looked == "large")
		}
	}
}
