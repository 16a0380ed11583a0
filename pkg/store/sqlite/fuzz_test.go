package sqlite

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"
)

// FuzzParseMigrationName checks that an accepted migration file name has a
// positive version and a name, and that the name it gives formats back to
// an accepted file name of the same version.
func FuzzParseMigrationName(f *testing.F) {
	for _, s := range []string{"0001_initial.sql", "2_x.sql", "0000_zero.sql", "_x.sql", "1_.sql", "x.sql", "9999999999999999999_x.sql"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, file string) {
		v, name, err := parseMigrationName(file)
		if err != nil {
			return
		}
		if v < 1 || name == "" || !strings.HasSuffix(file, "_"+name+".sql") {
			t.Fatalf("parseMigrationName(%q) = %d, %q", file, v, name)
		}
		v2, name2, err := parseMigrationName(fmt.Sprintf("%04d_%s.sql", v, name))
		if err != nil || v2 != v || name2 != name {
			t.Fatalf("reformatted %q: %d, %q, %v", file, v2, name2, err)
		}
	})
}

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
