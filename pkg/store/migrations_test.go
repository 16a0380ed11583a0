package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func TestParseMigrationName(t *testing.T) {
	tests := []struct {
		file    string
		version int
		name    string
		ok      bool
	}{
		{"0001_initial.sql", 1, "initial", true},
		{"12_more_tables.sql", 12, "more_tables", true},
		{"0000_zero.sql", 0, "", false},
		{"0001_.sql", 0, "", false},
		{"_x.sql", 0, "", false},
		{"0001_x.txt", 0, "", false},
		{"-1_x.sql", 0, "", false},
		{"+1_x.sql", 0, "", false},
		{"99999999999999999999999_x.sql", 0, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			v, name, err := ParseMigrationName(tt.file)
			if (err == nil) != tt.ok || v != tt.version || name != tt.name {
				t.Fatalf("ParseMigrationName(%q) = %d, %q, %v", tt.file, v, name, err)
			}
		})
	}
}

// FuzzParseMigrationName checks that an accepted migration file name has a
// positive version and a name, and that the name it gives formats back to
// an accepted file name of the same version.
func FuzzParseMigrationName(f *testing.F) {
	for _, s := range []string{"0001_initial.sql", "2_x.sql", "0000_zero.sql", "_x.sql", "1_.sql", "x.sql", "9999999999999999999_x.sql"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, file string) {
		v, name, err := ParseMigrationName(file)
		if err != nil {
			return
		}
		if v < 1 || name == "" || !strings.HasSuffix(file, "_"+name+".sql") {
			t.Fatalf("ParseMigrationName(%q) = %d, %q", file, v, name)
		}
		v2, name2, err := ParseMigrationName(fmt.Sprintf("%04d_%s.sql", v, name))
		if err != nil || v2 != v || name2 != name {
			t.Fatalf("reformatted %q: %d, %q, %v", file, v2, name2, err)
		}
	})
}

func TestPendingMigrations(t *testing.T) {
	ms, err := LoadMigrations(fstest.MapFS{
		"migrations/0001_a.sql": {}, "migrations/0002_b.sql": {}, "migrations/0004_d.sql": {},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		applied []int
		want    []int
		tooNew  bool
	}{
		{"a fresh database needs every migration, in order", nil, []int{1, 2, 4}, false},
		{"an up-to-date database needs none", []int{4, 1, 2}, nil, false},
		{"a gap below the highest recorded is filled", []int{1, 4}, []int{2}, false},
		{"a version the binary does not know is refused", []int{1, 2, 3, 4}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pending, err := PendingMigrations(ms, tt.applied)
			if tt.tooNew != errors.Is(err, ErrSchemaTooNew) || (!tt.tooNew && err != nil) {
				t.Fatalf("err = %v, want ErrSchemaTooNew: %v", err, tt.tooNew)
			}
			var got []int
			for _, m := range pending {
				got = append(got, m.Version)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("pending = %v, want %v", got, tt.want)
			}
		})
	}
}
