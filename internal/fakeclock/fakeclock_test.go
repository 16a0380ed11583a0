package fakeclock

import (
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := New(start)
	t.Run("should read its start until advanced", func(t *testing.T) {
		if got := c.Now(); !got.Equal(start) {
			t.Fatalf("Now() = %v, want %v", got, start)
		}
	})
	t.Run("should move forward by what Advance says", func(t *testing.T) {
		c.Advance(90 * time.Second)
		if got := c.Now(); !got.Equal(start.Add(90 * time.Second)) {
			t.Fatalf("Now() = %v, want %v", got, start.Add(90*time.Second))
		}
	})
}
