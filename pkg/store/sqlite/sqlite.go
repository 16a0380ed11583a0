// Package sqlite is the embedded default metadata store of clusterkeys: one
// SQLite file, through the pure Go driver modernc.org/sqlite, so the binaries
// need no cgo and no database server.
//
// It implements ca.Store (clusters, CA generations, the issued-certificate
// registry), keywrap.Store (KEKs and their versions) and the blob store of
// software key custody.
//
// # Concurrency
//
// Several processes may open the same file at once (localrun and the KMS
// shim share a state directory). The file is in WAL mode, so readers never
// wait for the writer. Every write transaction starts with BEGIN IMMEDIATE:
// it takes the write lock up front, so two writers never deadlock upgrading
// a read lock, and a writer that finds the lock taken waits up to the busy
// timeout (5 s) before failing with api.ErrUnavailable. Rekey and RotateKEK
// are compare-and-swaps on the generation inside such a transaction, so
// concurrent instances never lose or fork a CA or a KEK.
//
// # Errors
//
// As documented in package store: a missing object wraps api.ErrNotFound,
// an existing one api.ErrConflict, a lost compare-and-swap
// api.ErrGenerationMismatch, and a busy, locked, unreadable or closed
// database api.ErrUnavailable. Error strings never contain blob contents.
//
// # Times
//
// Times are stored as UTC text with a fixed width (TimeLayout), so that
// comparing the text in SQL compares the instants, and NULL is the zero
// time. Every time read back is in UTC. Years outside 0000–9999 are refused.
//
// # Schema
//
// The schema is a numbered list of SQL files embedded in the binary
// (migrations/NNNN_name.sql; numbers may have gaps). Open applies, in one
// transaction and in order, those not yet recorded in the schema_migrations
// table, and refuses a database that has a migration the binary does not
// know (ErrSchemaTooNew).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// BusyTimeout is how long a statement waits for a lock another connection
// or process holds before it fails with api.ErrUnavailable.
const BusyTimeout = 5 * time.Second

// maxConns bounds the open (and idle) connections of one DB.
const maxConns = 8

// TimeLayout is the layout of every stored time, always in UTC.
const TimeLayout = "2006-01-02T15:04:05.000000000Z"

// ErrSchemaTooNew is wrapped by Open when the database was migrated by a
// newer clusterkeys than this one: it is store.ErrSchemaTooNew.
var ErrSchemaTooNew = store.ErrSchemaTooNew

//go:embed migrations/*.sql
var migrationFiles embed.FS

// DB is an open SQLite metadata store. It is safe for concurrent use.
type DB struct {
	// writer admits one write transaction of this process at a time, so
	// that writers queue here instead of in SQLite's busy handler, which
	// polls with sleeps of up to 100 ms and made the tail latency of
	// concurrent signs tens of milliseconds. Other processes on the same
	// file still meet BEGIN IMMEDIATE and the busy timeout.
	writer chan struct{}
	// certs queues RecordCertificate calls for the group commit.
	certs certQueue
	stmts hotStatements
	// probes says when a listing by status looks for a backlog of
	// expired certificates to mark (MarkExpired).
	probes store.LapseProbes
	db     *sql.DB
	path   string
	closed atomic.Bool
}

// Open opens the store at path, creating the file (mode 0600) when absent;
// its parent directory must exist. It applies the schema migrations this
// binary knows and the database does not have yet.
func Open(ctx context.Context, path string) (*DB, error) {
	return open(ctx, path, BusyTimeout)
}

// open is Open with a chosen busy timeout (tests shorten it).
func open(ctx context.Context, path string, busyTimeout time.Duration) (*DB, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open sqlite store %q: want the path of a file, without '?' or '#'", path)
	}
	if err := createFile(path); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn(path, busyTimeout))
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	// Every connection holds its own SQLite handle; a few suffice, since
	// writers serialize on the file lock anyway. As many may stay idle as
	// may be open: with fewer, a burst of concurrent signs closed the extra
	// connections after each use and opened them again (pragmas and
	// prepared statements included) on the next.
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	d := &DB{db: db, path: path, writer: make(chan struct{}, 1)}
	if err := d.migrate(ctx, migrationFiles); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	if err := d.prepare(ctx); err != nil {
		d.stmts.close()
		db.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	return d, nil
}

// dsn returns the modernc.org/sqlite data source name of path: WAL journal,
// a busy timeout, foreign keys enforced, and BEGIN IMMEDIATE for every
// read-write transaction. Every connection also gets:
//
//   - synchronous(FULL): a commit is on disk before it returns. A rekey
//     destroys the retired key right after its commit; with NORMAL, a power
//     loss could undo the commit after the key is gone, losing the CA.
//   - secure_delete(ON): deleted content is overwritten with zeros, so a
//     destroyed software key blob does not linger in free pages.
func dsn(path string, busyTimeout time.Duration) string {
	return path + "?_pragma=busy_timeout(" + strconv.FormatInt(busyTimeout.Milliseconds(), 10) + ")" +
		"&_pragma=foreign_keys(1)" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(FULL)" +
		"&_pragma=secure_delete(ON)" +
		"&_txlock=immediate"
}

// createFile creates path with mode 0600 unless it exists. SQLite gives its
// -wal and -shm files the mode of the database file.
func createFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		if err := f.Close(); err != nil {
			return fmt.Errorf("create sqlite store %s: %w", path, err)
		}
		return nil
	case errors.Is(err, fs.ErrExist):
		return nil
	default:
		return fmt.Errorf("create sqlite store %s: %w", path, err)
	}
}

// Close closes the database. Calls after Close fail with api.ErrUnavailable.
func (d *DB) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	d.stmts.close()
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("close sqlite store %s: %w", d.path, err)
	}
	return nil
}

// Ping reports whether the database answers a query (for /readyz).
func (d *DB) Ping(ctx context.Context) error {
	var one int
	if err := d.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return d.wrap(err, "ping sqlite store %s", d.path)
	}
	return nil
}

// SchemaVersion returns the highest migration applied to the database.
func (d *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := d.db.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v)
	if err != nil {
		return 0, d.wrap(err, "read schema version")
	}
	return v, nil
}

// migrate applies, in one write transaction and in order of version, the
// migrations of fsys that the database has not recorded (also one below
// the highest recorded, which fills a gap), and refuses a database that
// recorded a migration fsys does not know.
func (d *DB) migrate(ctx context.Context, fsys fs.FS) error {
	ms, err := store.LoadMigrations(fsys)
	if err != nil {
		return err
	}
	// Every start of every instance (each Lambda cold start) opens the
	// store: when the schema is up to date, a read says so without taking
	// the write lock that a burst of signs holds.
	if current, err := d.upToDate(ctx, ms); err != nil || current {
		return err
	}
	return d.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER NOT NULL PRIMARY KEY,
			name       TEXT    NOT NULL,
			applied_at TEXT    NOT NULL
		) STRICT`)
		if err != nil {
			return d.wrap(err, "create schema_migrations")
		}
		applied, err := appliedMigrations(ctx, tx)
		if err != nil {
			return d.wrap(err, "read schema version")
		}
		pending, err := store.PendingMigrations(ms, applied)
		if err != nil {
			return err
		}
		now := formatTime(time.Now())
		for _, m := range pending {
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return d.wrap(err, "apply migration %d (%s)", m.Version, m.Name)
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
				m.Version, m.Name, now); err != nil {
				return d.wrap(err, "record migration %d (%s)", m.Version, m.Name)
			}
		}
		return nil
	})
}

// upToDate reports whether schema_migrations records exactly the
// migrations ms, reading without a write transaction. A schema that has a
// migration ms does not know fails with ErrSchemaTooNew; a missing table or
// a missing migration returns false.
func (d *DB) upToDate(ctx context.Context, ms []store.Migration) (bool, error) {
	tx, err := d.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return false, nil // the write path reports it
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	applied, err := appliedMigrations(ctx, tx)
	if err != nil {
		return false, nil // no schema_migrations yet
	}
	pending, err := store.PendingMigrations(ms, applied)
	return err == nil && len(pending) == 0, err
}

// appliedMigrations returns the versions schema_migrations records.
func appliedMigrations(ctx context.Context, tx *sql.Tx) ([]int, error) {
	rows, err := tx.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var applied []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		applied = append(applied, v)
	}
	return applied, rows.Err()
}

// write runs fn in a read-write transaction (BEGIN IMMEDIATE) and commits
// when fn returns nil.
func (d *DB) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	select {
	case d.writer <- struct{}{}:
		defer func() { <-d.writer }()
	case <-ctx.Done():
		return d.wrap(ctx.Err(), "wait for the write lock")
	}
	return d.writeLocked(ctx, fn)
}

// writeLocked is write for a caller that holds d.writer.
func (d *DB) writeLocked(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return d.wrap(err, "begin transaction")
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return d.wrap(err, "commit")
	}
	return nil
}

// wrap returns err with context, wrapping the api sentinel its cause maps
// to, if any: no rows → ErrNotFound, unique or primary key violation →
// ErrConflict, a missing referenced row → ErrNotFound, busy, locked, I/O
// errors and a closed database → ErrUnavailable.
func (d *DB) wrap(err error, format string, args ...any) error {
	return store.Wrap(err, classify(err, d.closed.Load()), fmt.Sprintf(format, args...))
}

// classify returns the api sentinel err maps to, or nil.
func classify(err error, closed bool) error {
	if errors.Is(err, sql.ErrNoRows) {
		return api.ErrNotFound
	}
	var se *msqlite.Error
	if errors.As(err, &se) {
		switch code := se.Code(); code {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return api.ErrConflict
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return api.ErrNotFound
		default:
			switch code & 0xff {
			case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR,
				sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY:
				return api.ErrUnavailable
			}
		}
		return nil
	}
	if closed || errors.Is(err, sql.ErrConnDone) {
		return api.ErrUnavailable
	}
	return nil
}

// formatTime returns the stored form of t: NULL for the zero time, else
// TimeLayout in UTC.
func formatTime(t time.Time) sql.NullString {
	if t.IsZero() {
		return sql.NullString{}
	}
	return sql.NullString{String: t.UTC().Format(TimeLayout), Valid: true}
}

// checkTimes refuses times that TimeLayout cannot store in order
// (store.CheckTimes).
func checkTimes(ts ...time.Time) error { return store.CheckTimes(ts...) }

// scanner is a row, or rows at one row, to scan.
type scanner interface{ Scan(...any) error }

// queryAll runs query and reads every row with scan.
func queryAll[T any](ctx context.Context, d *DB, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := d.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// parseTime is the inverse of formatTime.
func parseTime(s sql.NullString) (time.Time, error) {
	if !s.Valid {
		return time.Time{}, nil
	}
	t, err := time.Parse(TimeLayout, s.String)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored time %q: %w", s.String, err)
	}
	return t.UTC(), nil
}

// timeScanner scans a stored time into dst.
type timeScanner struct{ dst *time.Time }

// Scan implements sql.Scanner. The driver hands TEXT as a string (and NULL
// as nil), taken as is: through sql.NullString.Scan, the NullString would
// escape, an allocation per time column of every row.
func (s timeScanner) Scan(src any) error {
	var ns sql.NullString
	switch v := src.(type) {
	case nil:
	case string:
		ns = sql.NullString{String: v, Valid: true}
	default:
		var other sql.NullString
		if err := other.Scan(src); err != nil {
			return err
		}
		ns = other
	}
	t, err := parseTime(ns)
	if err != nil {
		return err
	}
	*s.dst = t
	return nil
}

// tm returns a scanner that stores a stored time into dst.
func tm(dst *time.Time) timeScanner { return timeScanner{dst} }
