package kmsplugin

import (
	"testing"
	"time"
)

type recordingCacher struct{ ttl time.Duration }

func (r *recordingCacher) CacheKEKs(ttl time.Duration) { r.ttl = ttl }

func TestOptionsCacheKEKs(t *testing.T) {
	tests := []struct {
		name    string
		refresh time.Duration
		want    time.Duration
	}{
		{"the default refresh interval", DefaultRefreshInterval, DefaultRefreshInterval},
		{"zero means the default", 0, DefaultRefreshInterval},
		{"a shorter refresh interval bounds the cache alike", 2 * time.Second, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions()
			o.RefreshInterval = tt.refresh
			var c recordingCacher
			if !o.CacheKEKs(&c) {
				t.Fatal("CacheKEKs did not find the cache")
			}
			if c.ttl != tt.want {
				t.Fatalf("KEK cache TTL %v, want %v", c.ttl, tt.want)
			}
		})
	}
	if DefaultOptions().CacheKEKs(struct{}{}) {
		t.Fatal("CacheKEKs reported a cache on custody without one")
	}
}
