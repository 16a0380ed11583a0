package store

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
)

// Migration is one schema file a store embeds: migrations/NNNN_name.sql.
// Every store numbers its migrations alike, so one list of versions means
// the same schema on each.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// ParseMigrationName returns the version and name of a migration file named
// NNNN_name.sql (a positive decimal version, any number of digits).
func ParseMigrationName(file string) (int, string, error) {
	base, ok := strings.CutSuffix(file, ".sql")
	if !ok {
		return 0, "", fmt.Errorf("migration %q: name must end in .sql", file)
	}
	num, name, ok := strings.Cut(base, "_")
	if !ok || name == "" || num == "" {
		return 0, "", fmt.Errorf("migration %q: name must be NNNN_name.sql", file)
	}
	for _, r := range num {
		if r < '0' || r > '9' {
			return 0, "", fmt.Errorf("migration %q: version %q is not decimal", file, num)
		}
	}
	v, err := strconv.Atoi(num)
	if err != nil || v < 1 {
		return 0, "", fmt.Errorf("migration %q: version %q out of range", file, num)
	}
	return v, name, nil
}

// LoadMigrations reads the migrations under migrations/ in fsys, in order of
// version, and refuses a version given twice. Gaps are allowed: work done on
// separate branches numbers its migrations ahead of time, and a branch may be
// merged before the migrations numbered below its own.
func LoadMigrations(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		v, name, err := ParseMigrationName(e.Name())
		if err != nil {
			return nil, err
		}
		b, err := fs.ReadFile(fsys, "migrations/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s: version %d given twice", ms[i-1].Name, ms[i].Name, ms[i].Version)
		}
	}
	return ms, nil
}

// ErrSchemaTooNew is wrapped by a store's Open when the database was
// migrated by a newer clusterkeys than this one: it records a migration
// the binary does not know.
var ErrSchemaTooNew = errors.New("database schema is newer than this binary knows")

// PendingMigrations returns the migrations of ms (as LoadMigrations gives
// them) whose versions applied, the versions a database records, does not
// hold, in order of version: one below the highest recorded is pending
// too, which fills a gap. A database that records a version ms does not
// know is refused with an error wrapping ErrSchemaTooNew.
func PendingMigrations(ms []Migration, applied []int) ([]Migration, error) {
	known := map[int]bool{}
	for _, m := range ms {
		known[m.Version] = true
	}
	for _, v := range applied {
		if !known[v] {
			return nil, fmt.Errorf("schema has migration %d, which this binary does not know: %w", v, ErrSchemaTooNew)
		}
	}
	var pending []Migration
	for _, m := range ms {
		if !slices.Contains(applied, m.Version) {
			pending = append(pending, m)
		}
	}
	return pending, nil
}
