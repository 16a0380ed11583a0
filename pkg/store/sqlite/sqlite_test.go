package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/storetest"
)

// The store serves every function that needs one.
var _ storetest.Store = (*DB)(nil)

func TestOpen(t *testing.T) {
	t.Run("a new file is created with mode 0600, and so are its WAL files", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "new.db")
		d := openAt(t, path)
		createCluster(t, d, "a") // forces the WAL and shared-memory files
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if m := fi.Mode().Perm(); m != 0o600 {
				t.Errorf("%s: mode %o, want 600", filepath.Base(p), m)
			}
		}
	})
	t.Run("the journal is WAL, foreign keys are on and writes take the lock up front", func(t *testing.T) {
		d := openTest(t)
		var mode string
		var fk, timeout int
		ctx := context.Background()
		if err := d.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := d.db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
			t.Fatal(err)
		}
		if err := d.db.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&timeout); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" || fk != 1 || timeout != int(BusyTimeout.Milliseconds()) {
			t.Fatalf("journal_mode=%s foreign_keys=%d busy_timeout=%d", mode, fk, timeout)
		}
		if !strings.Contains(dsn("x.db", BusyTimeout), "_txlock=immediate") {
			t.Fatal("DSN does not ask for BEGIN IMMEDIATE")
		}
	})
	t.Run("an existing file keeps its mode", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "old.db")
		if err := os.WriteFile(path, nil, 0o640); err != nil {
			t.Fatal(err)
		}
		openAt(t, path)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o640 {
			t.Fatalf("mode %o, want 640 as created", m)
		}
	})

	bad := []struct {
		name string
		path string
	}{
		{"a missing parent directory is an error", filepath.Join(t.TempDir(), "missing", "x.db")},
		{"an empty path is refused", ""},
		{"an in-memory database is refused", ":memory:"},
		{"a URI is refused", "file:x.db"},
		{"a path with a query is refused", filepath.Join(t.TempDir(), "x.db?mode=ro")},
		{"a file that is not a database is refused", notADatabase(t)},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Open(context.Background(), tt.path)
			if err == nil {
				d.Close()
				t.Fatalf("Open(%q) succeeded", tt.path)
			}
		})
	}
}

func notADatabase(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "text.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("not a database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	known := storetest.Migrations(t, migrationFiles)
	top := known[len(known)-1].Version

	t.Run("reopening applies no migration twice and keeps the data", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "m.db")
		d, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		createCluster(t, d, "kept")
		d.Close()
		for range 3 {
			d, err = Open(ctx, path)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			var rows int
			if err := d.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&rows); err != nil {
				t.Fatal(err)
			}
			if v, err := d.SchemaVersion(ctx); err != nil || v != top || rows != len(known) {
				t.Fatalf("version %d (%v), %d rows; want %d and %d rows", v, err, rows, top, len(known))
			}
			if _, err := d.Cluster(ctx, "kept"); err != nil {
				t.Fatalf("data lost on reopen: %v", err)
			}
			d.Close()
		}
	})

	t.Run("a new migration is applied alone on an existing database", func(t *testing.T) {
		d := openTest(t)
		next := storetest.MigrationFS(known, fstest.MapFS{
			fmt.Sprintf("migrations/%04d_extra.sql", top+1): {Data: []byte("CREATE TABLE extra (x INTEGER) STRICT;")},
		})
		if err := d.migrate(ctx, next); err != nil {
			t.Fatalf("migrate to %d: %v", top+1, err)
		}
		if err := d.migrate(ctx, next); err != nil {
			t.Fatalf("migrate to %d again: %v", top+1, err)
		}
		if v, _ := d.SchemaVersion(ctx); v != top+1 {
			t.Fatalf("version %d, want %d", v, top+1)
		}
		if _, err := d.db.ExecContext(ctx, "INSERT INTO extra (x) VALUES (1)"); err != nil {
			t.Fatalf("migration %d not applied: %v", top+1, err)
		}
	})

	t.Run("a migration merged later with a lower number is still applied", func(t *testing.T) {
		// Branches add migrations in parallel: a database may have
		// applied 0003 before the binary that brings 0002 arrives.
		d := openTest(t)
		late := storetest.MigrationFS(known, fstest.MapFS{
			fmt.Sprintf("migrations/%04d_late.sql", top+3): {Data: []byte("CREATE TABLE late (x INTEGER) STRICT;")},
		})
		if err := d.migrate(ctx, late); err != nil {
			t.Fatalf("migrate with a gap: %v", err)
		}
		late[fmt.Sprintf("migrations/%04d_merged.sql", top+1)] = &fstest.MapFile{Data: []byte("CREATE TABLE merged (x INTEGER) STRICT;")}
		if err := d.migrate(ctx, late); err != nil {
			t.Fatalf("migrate the late merge: %v", err)
		}
		for _, table := range []string{"late", "merged"} {
			if _, err := d.db.ExecContext(ctx, "INSERT INTO "+table+" (x) VALUES (1)"); err != nil {
				t.Fatalf("table %s missing: %v", table, err)
			}
		}
		var rows int
		if err := d.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&rows); err != nil || rows != len(known)+2 {
			t.Fatalf("%d migrations recorded (%v), want %d", rows, err, len(known)+2)
		}
	})

	t.Run("a failing migration leaves the schema as it was", func(t *testing.T) {
		d := openTest(t)
		broken := storetest.MigrationFS(known, fstest.MapFS{
			fmt.Sprintf("migrations/%04d_half.sql", top+1): {Data: []byte("CREATE TABLE half (x INTEGER); SELECT * FROM no_such_table;")},
		})
		if err := d.migrate(ctx, broken); err == nil {
			t.Fatal("broken migration applied")
		}
		if v, _ := d.SchemaVersion(ctx); v != top {
			t.Fatalf("version %d, want %d", v, top)
		}
		if _, err := d.db.ExecContext(ctx, "INSERT INTO half (x) VALUES (1)"); err == nil {
			t.Fatal("half of a failed migration was kept")
		}
	})

	t.Run("a database from a newer binary is refused", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "future.db")
		d, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.db.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', 'x')", top+1); err != nil {
			t.Fatal(err)
		}
		d.Close()
		d, err = Open(ctx, path)
		if err == nil {
			d.Close()
			t.Fatal("Open accepted a schema newer than the binary")
		}
		if !errors.Is(err, ErrSchemaTooNew) {
			t.Fatalf("err = %v, want ErrSchemaTooNew", err)
		}
	})

	t.Run("a database with a migration this binary lacks is refused", func(t *testing.T) {
		d := openTest(t)
		gap := storetest.MigrationFS(known, fstest.MapFS{
			fmt.Sprintf("migrations/%04d_after_gap.sql", top+2): {Data: []byte("SELECT 1;")},
		})
		if err := d.migrate(ctx, gap); err != nil {
			t.Fatal(err)
		}
		if _, err := d.db.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'other_branch', 'x')", top+1); err != nil {
			t.Fatal(err)
		}
		if err := d.migrate(ctx, gap); !errors.Is(err, ErrSchemaTooNew) {
			t.Fatalf("err = %v, want ErrSchemaTooNew", err)
		}
	})

	badSets := []struct {
		name  string
		files fstest.MapFS
	}{
		{"a repeated version is refused", fstest.MapFS{
			"migrations/0001_a.sql": {}, "migrations/1_b.sql": {},
		}},
		{"a file without a number is refused", fstest.MapFS{
			"migrations/init.sql": {},
		}},
	}
	for _, tt := range badSets {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := store.LoadMigrations(tt.files); err == nil {
				t.Fatal("LoadMigrations accepted the set")
			}
		})
	}
}

func TestUnavailable(t *testing.T) {
	ctx := context.Background()
	t.Run("a transaction takes the write lock at BEGIN, and a lock held past the busy timeout answers ErrUnavailable", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "busy.db")
		d, err := open(ctx, path, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		holder := openAt(t, path)
		tx, err := holder.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: holds the write lock
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tx.Rollback() })

		err = d.PutBlob(ctx, "r", []byte("b"))
		if !errors.Is(err, api.ErrUnavailable) {
			t.Fatalf("PutBlob under a held lock: %v, want ErrUnavailable", err)
		}
		// Readers are not blocked by the writer in WAL mode.
		if err := d.Ping(ctx); err != nil {
			t.Fatalf("Ping under a held write lock: %v", err)
		}
		if _, err := d.GetBlob(ctx, "r"); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("GetBlob under a held write lock: %v, want ErrNotFound", err)
		}
	})
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"no rows is not found", sql.ErrNoRows, api.ErrNotFound},
		{"a done connection is unavailable", sql.ErrConnDone, api.ErrUnavailable},
		{"another error maps to nothing", errors.New("boom"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err, false); got != tt.want {
				t.Fatalf("classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestTimes(t *testing.T) {
	tests := []struct {
		name string
		in   time.Time
	}{
		{"the zero time is NULL and comes back zero", time.Time{}},
		{"a time in another zone comes back in UTC, to the nanosecond", t0},
		{"the latest X.509 time survives", time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
		{"the Unix epoch survives", time.Unix(0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := formatTime(tt.in)
			if s.Valid == tt.in.IsZero() {
				t.Fatalf("formatTime(%v).Valid = %v", tt.in, s.Valid)
			}
			got, err := parseTime(s)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tt.in) || (!got.IsZero() && got.Location() != time.UTC) {
				t.Fatalf("round trip of %v gave %v", tt.in, got)
			}
		})
	}
	t.Run("the text order is the time order", func(t *testing.T) {
		a, b := t0, t0.Add(time.Nanosecond)
		if !(formatTime(a).String < formatTime(b).String) {
			t.Fatalf("%s !< %s", formatTime(a).String, formatTime(b).String)
		}
	})
	t.Run("a year past 9999 is refused", func(t *testing.T) {
		if err := checkTimes(t0, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)); err == nil {
			t.Fatal("checkTimes accepted year 10000")
		}
	})
}

// TestScannersDoNotAllocate checks that a stored time or policy column the
// driver hands as a string (or NULL) is scanned without a heap allocation
// of its own: every sign scans six times and a policy.
func TestScannersDoNotAllocate(t *testing.T) {
	var tt time.Time
	stored := formatTime(time.Date(2026, 11, 25, 7, 30, 15, 123456000, time.UTC)).String
	var p store.ClusterPolicy
	var src any = stored // as the driver hands it
	for _, tc := range []struct {
		name string
		scan func() error
	}{
		{"time", func() error { return tm(&tt).Scan(src) }},
		{"NULL time", func() error { return tm(&tt).Scan(nil) }},
		{"NULL policy", func() error { return pol(&p).Scan(nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.scan(); err != nil {
				t.Fatal(err)
			}
			if n := testing.AllocsPerRun(100, func() { _ = tc.scan() }); n != 0 {
				t.Fatalf("%v allocations per scan, want 0", n)
			}
		})
	}
	if err := tm(&tt).Scan(stored); err != nil || tt.Format(TimeLayout) != stored {
		t.Fatalf("scanned %v, %v; want %s", tt, err, stored)
	}
}
