package sqlite

import (
	"database/sql"
	"testing"
	"time"
)

// FuzzTime checks that every storable time survives the round trip in UTC
// and that the stored text sorts like the times.
func FuzzTime(f *testing.F) {
	f.Add(int64(0), int64(0), "2026-11-25T07:30:15.123456789Z")
	f.Add(int64(253402300799), int64(1), "not a time")
	f.Add(int64(-62135596800), int64(-5), "0000-01-01T00:00:00.000000000Z")
	f.Fuzz(func(t *testing.T, sec, delta int64, text string) {
		a := time.Unix(sec, 0)
		b := a.Add(time.Duration(delta))
		if checkTimes(a, b) != nil {
			return
		}
		for _, tt := range []time.Time{a, b} {
			got, err := parseTime(formatTime(tt))
			if err != nil || !got.Equal(tt) {
				t.Fatalf("round trip of %v: %v, %v", tt, got, err)
			}
		}
		if !a.IsZero() && !b.IsZero() {
			sa, sb := formatTime(a).String, formatTime(b).String
			if (sa < sb) != a.Before(b) {
				t.Fatalf("order of %q and %q differs from %v and %v", sa, sb, a, b)
			}
		}
		// Arbitrary stored text is either a UTC time or an error.
		got, err := parseTime(sql.NullString{String: text, Valid: true})
		if err == nil && got.Location() != time.UTC {
			t.Fatalf("parseTime(%q) in %v", text, got.Location())
		}
	})
}
