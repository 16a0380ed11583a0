package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// TestOpenUpToDateTakesNoWriteLock: opening a store whose schema is up to
// date (every start of every instance, each Lambda cold start) only reads,
// so it succeeds while another connection holds the write lock. A new
// store, or one missing a migration, still migrates under the write lock.
func TestOpenUpToDateTakesNoWriteLock(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		wantErr bool
	}{
		{"an up-to-date store opens beside a writer", func(t *testing.T, path string) {
			d, err := Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			d.Close()
		}, false},
		{"a store missing a migration waits for the writer", func(t *testing.T, path string) {
			d, err := Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			ms, err := store.LoadMigrations(migrationFiles)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d.db.ExecContext(ctx, "DELETE FROM schema_migrations WHERE version = ?", ms[len(ms)-1].Version); err != nil {
				t.Fatal(err)
			}
			d.Close()
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "clusterkeys.db")
			tt.prepare(t, path)
			// Another process's writer holds the lock for the whole open.
			w, err := sql.Open("sqlite", dsn(path, BusyTimeout))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { w.Close() })
			tx, err := w.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = tx.Rollback() })
			if _, err := tx.ExecContext(ctx, "CREATE TABLE held_lock (x INTEGER)"); err != nil {
				t.Fatal(err)
			}
			d, err := open(ctx, path, 100*time.Millisecond)
			if (err != nil) != tt.wantErr {
				t.Fatalf("open beside a writer: %v, want error %v", err, tt.wantErr)
			}
			if err == nil {
				d.Close()
			}
		})
	}
}
