package store

import (
	"errors"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

func TestWrap(t *testing.T) {
	cause := errors.New("driver said no")
	tests := []struct {
		name     string
		sentinel error
		want     string
	}{
		{"a cause with a sentinel wraps both", api.ErrNotFound, "read KEK \"k\": " + api.ErrNotFound.Error() + ": driver said no"},
		{"a cause without one wraps the cause", nil, "read KEK \"k\": driver said no"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Wrap(cause, tt.sentinel, `read KEK "k"`)
			if err.Error() != tt.want || !errors.Is(err, cause) || (tt.sentinel != nil && !errors.Is(err, tt.sentinel)) {
				t.Fatalf("Wrap = %q, want %q wrapping the cause and the sentinel", err, tt.want)
			}
		})
	}
}
