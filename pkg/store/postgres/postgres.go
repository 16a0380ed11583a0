// Package postgres is the metadata store of clusterkeys on PostgreSQL, for
// many stateless instances (localrun, the Lambda functions, KMS shims on
// several nodes) sharing one database. It uses pgx v5 and its pool.
//
// It implements the same contract as package sqlite, over the same tables
// (ca.Store, keywrap.Store, the blob store of software and Barbican
// custody), and passes the same conformance suite (pkg/store/storetest).
//
// # Connecting
//
// Open takes any connection string pgx takes: a URI such as
// postgres://user@db.example:5432/clusterkeys?sslmode=verify-full, a unix
// socket as postgres:///clusterkeys?host=/run/postgresql&port=5433, or
// libpq key=value pairs; the PG* environment variables and ~/.pgpass fill
// what it leaves out. The pool holds at most DefaultMaxConns connections
// (pool_max_conns in the string overrides it), a connection attempt gives up
// after DefaultConnectTimeout (connect_timeout overrides it), and idle
// connections are checked every HealthCheckPeriod. The string may hold a
// password: it is never logged nor put in an error.
//
// # Concurrency
//
// Every write is one transaction at READ COMMITTED. Rekey and RotateKEK
// are conditional UPDATEs of the generation (… WHERE generation =
// expected): of concurrent callers, on any number of instances, the first
// to commit wins and the others find zero rows and fail with
// api.ErrGenerationMismatch. RecordCertificate holds a share lock on the CA
// generation it records for, so a certificate recorded while a rekey
// retires that generation is either revoked by the rekey or stored revoked.
// A transaction that fails with a serialization failure or a deadlock
// (SQLSTATE 40001, 40P01) is retried up to MaxAttempts times in all, then
// fails with api.ErrConflict.
//
// # Errors
//
// As documented in package store: a missing object wraps api.ErrNotFound,
// an existing one (23505) api.ErrConflict, a lost compare-and-swap
// api.ErrGenerationMismatch, and a database that cannot be reached, is
// shutting down, refuses connections or is closed api.ErrUnavailable (503
// backend_unavailable). The pool replaces broken connections by itself: a
// server that comes back is used again without reopening the store.
//
// # Schema
//
// The schema is a numbered list of SQL files embedded in the binary
// (migrations/NNNN_name.sql, the same numbers as SQLite's; numbers may have
// gaps). Open applies those not yet recorded in schema_migrations, in order,
// in one transaction that first takes a transaction-scoped advisory lock
// (pg_advisory_xact_lock): when many instances start at once, one migrates
// and the others wait, then find nothing left to do. A database that has a
// migration the binary does not know is refused (ErrSchemaTooNew). The
// store uses the connection's search_path, so several stores can share a
// database in separate schemas (search_path=NAME in the connection string).
//
// # Statements
//
// A long-running process prepares each statement once per connection
// (pgx's default, QueryExecModeCacheStatement): a statement's first run
// costs a round trip more, later runs skip the server's parsing. A Lambda
// function's connection mostly serves a cold start, where that extra
// round trip per statement is most of the cost: in a Lambda execution
// environment (AWS_LAMBDA_RUNTIME_API is set), statements run unprepared
// in one round trip each (QueryExecModeExec: the extended protocol, its
// parameters still sent apart from the SQL). default_query_exec_mode in
// the connection string overrides either choice.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

const (
	// DefaultMaxConns bounds the pool unless the connection string sets
	// pool_max_conns. With many instances, their sum must stay below the
	// server's max_connections.
	DefaultMaxConns = 8
	// DefaultConnectTimeout bounds a connection attempt unless the
	// connection string sets connect_timeout.
	DefaultConnectTimeout = 5 * time.Second
	// HealthCheckPeriod is how often idle connections are checked.
	HealthCheckPeriod = 30 * time.Second
	// MaxAttempts is how many times a transaction runs when it keeps
	// failing with a serialization failure or a deadlock.
	MaxAttempts = 3
)

// migrationLockKey is the pg_advisory_xact_lock key that serializes schema
// migrations (an arbitrary constant: "ck-migr" in ASCII).
const migrationLockKey = 0x636b2d6d696772

// ErrSchemaTooNew is wrapped by Open when the database was migrated by a
// newer clusterkeys than this one: it is store.ErrSchemaTooNew.
var ErrSchemaTooNew = store.ErrSchemaTooNew

//go:embed migrations/*.sql
var migrationFiles embed.FS

// DB is an open PostgreSQL metadata store. It is safe for concurrent use.
type DB struct {
	pool   *pgxpool.Pool
	closed atomic.Bool
	// probes says when a listing by status looks for a backlog of
	// expired certificates to mark (MarkExpired).
	probes store.LapseProbes
}

// Open connects to the database dsn names (any connection string pgx takes)
// and applies the schema migrations this binary knows and the database
// does not have yet. Neither the string nor a password from it ever appears
// in the error.
func Open(ctx context.Context, dsn string) (*DB, error) {
	cfg, err := poolConfig(dsn)
	if err != nil {
		return nil, err
	}
	return open(ctx, cfg)
}

// open is Open with a parsed configuration.
func open(ctx context.Context, cfg *pgxpool.Config) (*DB, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	d := &DB{pool: pool}
	if err := d.migrate(ctx, migrationFiles); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	return d, nil
}

// poolConfig parses dsn and applies the defaults it does not override.
func poolConfig(dsn string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx masks passwords in its parse errors only on a best-effort
		// basis for malformed strings, so say nothing of the string.
		return nil, errors.New("open postgres store: cannot parse the connection string (not shown: it may hold a password)")
	}
	if !hasSetting(dsn, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	if !hasSetting(dsn, "pool_health_check_period") {
		cfg.HealthCheckPeriod = HealthCheckPeriod
	}
	if !hasSetting(dsn, "default_query_exec_mode") && os.Getenv(lambdaRuntimeEnv) != "" {
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	return cfg, nil
}

// lambdaRuntimeEnv is the variable the Lambda service sets for a function's
// process (the Runtime API's address): its statements run unprepared (see
// the package doc).
const lambdaRuntimeEnv = "AWS_LAMBDA_RUNTIME_API"

// hasSetting reports whether the connection string sets key, as a URI query
// parameter or a key=value pair.
func hasSetting(dsn, key string) bool {
	for _, sep := range []string{"?", "&", " ", "\t", "\n"} {
		if strings.Contains(dsn, sep+key+"=") || strings.Contains(dsn, sep+key+" =") {
			return true
		}
	}
	return strings.HasPrefix(dsn, key+"=") || strings.HasPrefix(dsn, key+" =")
}

// Close closes the pool. Calls after Close fail with api.ErrUnavailable; a
// second Close does nothing.
func (d *DB) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	d.pool.Close()
	return nil
}

// Ping reports whether the database answers a query now (for /readyz).
func (d *DB) Ping(ctx context.Context) error {
	var one int
	if err := d.attempt(ctx, func() error { return d.pool.QueryRow(ctx, "SELECT 1").Scan(&one) }); err != nil {
		return d.wrap(err, "ping postgres store")
	}
	return nil
}

// SchemaVersion returns the highest migration applied to the database.
func (d *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := d.attempt(ctx, func() error {
		return d.pool.QueryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v)
	})
	if err != nil {
		return 0, d.wrap(err, "read schema version")
	}
	return v, nil
}

// migrate applies, in one transaction under the migration advisory lock
// and in order of version, the migrations of fsys that the database has not
// recorded (also one below the highest recorded, which fills a gap), and
// refuses a database that recorded a migration fsys does not know.
func (d *DB) migrate(ctx context.Context, fsys fs.FS) error {
	ms, err := store.LoadMigrations(fsys)
	if err != nil {
		return err
	}
	// The common case, every start of an instance on a database already
	// migrated: one read, no transaction, no lock. It is a cold start's
	// cost in a Lambda function (about 2-3 ms of five round trips). A
	// missing table or a pending migration takes the locked path below,
	// which decides; a schema newer than this binary is refused either way.
	if rows, err := d.pool.Query(ctx, "SELECT version FROM schema_migrations"); err == nil {
		if applied, err := pgx.CollectRows(rows, pgx.RowTo[int]); err == nil {
			pending, err := store.PendingMigrations(ms, applied)
			if err != nil {
				return err
			}
			if len(pending) == 0 {
				return nil
			}
		}
	}
	return d.write(ctx, func(tx pgx.Tx) error {
		// Held until commit or rollback: the instances that start at the
		// same time wait here, then find the migrations recorded.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLockKey)); err != nil {
			return d.wrap(err, "take the migration lock")
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer     NOT NULL PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL
		)`)
		if err != nil {
			return d.wrap(err, "create schema_migrations")
		}
		rows, err := tx.Query(ctx, "SELECT version FROM schema_migrations")
		if err != nil {
			return d.wrap(err, "read schema version")
		}
		applied, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			return d.wrap(err, "read schema version")
		}
		pending, err := store.PendingMigrations(ms, applied)
		if err != nil {
			return err
		}
		for _, m := range pending {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return d.wrap(err, "apply migration %d (%s)", m.Version, m.Name)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, now())",
				m.Version, m.Name); err != nil {
				return d.wrap(err, "record migration %d (%s)", m.Version, m.Name)
			}
		}
		return nil
	})
}

// write runs fn in a transaction and commits when fn returns nil, with
// the retries of attempt.
func (d *DB) write(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return d.attempt(ctx, func() error { return d.writeOnce(ctx, fn) })
}

// attempt runs fn, and runs it again, up to MaxAttempts times in all, while
// it fails in a way that leaves nothing done: a serialization failure or a
// deadlock (the transaction was rolled back; the error wraps
// api.ErrConflict if it persists), or a failure before anything reached
// the server, such as a pooled connection the server closed when it
// restarted.
func (d *DB) attempt(ctx context.Context, fn func() error) error {
	var err error
	for range MaxAttempts {
		err = fn()
		if err == nil || ctx.Err() != nil || !(retryable(err) || pgconn.SafeToRetry(err)) {
			return err
		}
	}
	return err
}

func (d *DB) writeOnce(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return d.wrap(err, "begin transaction")
	}
	if err := fn(tx); err != nil {
		// A failed rollback leaves nothing behind: the server aborts the
		// transaction when its connection goes.
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return d.wrap(err, "commit")
	}
	return nil
}

// queryRow runs a query of one row and scans it into dest, with the
// retries of attempt.
func (d *DB) queryRow(ctx context.Context, sql string, args []any, dest ...any) error {
	return d.attempt(ctx, func() error { return d.pool.QueryRow(ctx, sql, args...).Scan(dest...) })
}

// query runs a query and calls each for every row, with the retries of
// attempt; reset is called before every attempt.
func (d *DB) query(ctx context.Context, reset func(), each func(pgx.Rows) error, sql string, args ...any) error {
	return d.attempt(ctx, func() error {
		reset()
		rows, err := d.pool.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := each(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	})
}

// queryAll runs query as query does and reads every row with scan.
func queryAll[T any](ctx context.Context, d *DB, scan func(pgx.Row) (T, error), query string, args ...any) ([]T, error) {
	var out []T
	err := d.query(ctx, func() { out = nil }, func(rows pgx.Rows) error {
		v, err := scan(rows)
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	}, query, args...)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SQLSTATE codes the store tells apart.
const (
	codeUniqueViolation      = "23505"
	codeForeignKeyViolation  = "23503"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
)

// retryable reports whether err is a serialization failure or a deadlock,
// after which the whole transaction may run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == codeSerializationFailure || pe.Code == codeDeadlockDetected)
}

// wrap returns err with context, wrapping the api sentinel its cause maps
// to, if any.
func (d *DB) wrap(err error, format string, args ...any) error {
	return store.Wrap(err, classify(err, d.closed.Load()), fmt.Sprintf(format, args...))
}

// classify returns the api sentinel err maps to, or nil: no rows →
// ErrNotFound; a unique violation → ErrConflict; a missing referenced row →
// ErrNotFound; connection exceptions (class 08), an operator intervention
// (57P01–57P03: shutdown, crash, starting up), insufficient resources (class
// 53, e.g. too many connections), a closed store, and any failure below SQL
// (dial, I/O, timeouts, a closed connection) → ErrUnavailable. A request
// canceled by its caller maps to nothing.
func classify(err error, closed bool) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return api.ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == codeUniqueViolation:
			return api.ErrConflict
		case pe.Code == codeForeignKeyViolation:
			return api.ErrNotFound
		case pe.Code == codeSerializationFailure, pe.Code == codeDeadlockDetected:
			return api.ErrConflict
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "53"),
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03":
			return api.ErrUnavailable
		}
		return nil
	}
	if closed {
		return api.ErrUnavailable
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) || pgconn.Timeout(err) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, net.ErrClosed) {
		return api.ErrUnavailable
	}
	return nil
}

// ts returns the stored form of t: NULL for the zero time.
func ts(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: t.UTC(), Valid: true}
}

// checkTimes refuses times outside 0000–9999, as every store does
// (store.CheckTimes), so that both stores accept the same records.
func checkTimes(ts ...time.Time) error { return store.CheckTimes(ts...) }

// timeScanner scans a timestamptz into dst: NULL is the zero time, others
// are in UTC.
type timeScanner struct{ dst *time.Time }

// ScanTimestamptz implements pgtype.TimestamptzScanner.
func (s timeScanner) ScanTimestamptz(v pgtype.Timestamptz) error {
	if !v.Valid {
		*s.dst = time.Time{}
		return nil
	}
	if v.InfinityModifier != pgtype.Finite {
		return fmt.Errorf("stored time is %v", v.InfinityModifier)
	}
	*s.dst = v.Time.UTC()
	return nil
}

// tm returns a scanner that stores a timestamptz into dst.
func tm(dst *time.Time) timeScanner { return timeScanner{dst} }

// nonNil returns b, or an empty slice for nil, so a NOT NULL bytea column
// accepts it (pgx sends a nil slice as NULL).
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
