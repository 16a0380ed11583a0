package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/storetest"
)

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	known := storetest.Migrations(t, migrationFiles)
	latest := known[len(known)-1].Version
	countRows := func(t *testing.T, d *DB) int {
		t.Helper()
		var n int
		if err := d.pool.QueryRow(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("an instance starting on a migrated database takes no lock", func(t *testing.T) {
		// A cold start pays one read, not a locked transaction: it opens
		// while another session holds the migration lock.
		dsn := newSchema(t)
		first := openDSN(t, dsn)
		conn, err := first.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrationLockKey)); err != nil {
			t.Fatal(err)
		}
		defer conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", int64(migrationLockKey))
		openCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		d, err := Open(openCtx, dsn)
		if err != nil {
			t.Fatalf("Open while the migration lock is held: %v", err)
		}
		d.Close()
	})

	t.Run("instances starting at once migrate once and all open", func(t *testing.T) {
		dsn := newSchema(t)
		const n = 8
		dbs := make([]*DB, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				dbs[i], errs[i] = Open(ctx, dsn)
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("Open %d: %v", i, errs[i])
			}
			t.Cleanup(func() { dbs[i].Close() })
		}
		if rows := countRows(t, dbs[0]); rows != len(known) {
			t.Fatalf("%d rows in schema_migrations, want %d", rows, len(known))
		}
		storetest.CreateCluster(t, dbs[3], "c")
		if _, err := dbs[5].Cluster(ctx, "c"); err != nil {
			t.Fatalf("a second instance does not see the first's cluster: %v", err)
		}
	})

	t.Run("reopening applies no migration twice and keeps the data", func(t *testing.T) {
		dsn := newSchema(t)
		storetest.CreateCluster(t, openDSN(t, dsn), "kept")
		for range 3 {
			d := openDSN(t, dsn)
			if v, err := d.SchemaVersion(ctx); err != nil || v != latest || countRows(t, d) != len(known) {
				t.Fatalf("version %d (%v); want %d", v, err, latest)
			}
			if _, err := d.Cluster(ctx, "kept"); err != nil {
				t.Fatalf("data lost on reopen: %v", err)
			}
		}
	})

	t.Run("a new migration is applied alone on an existing database", func(t *testing.T) {
		d := openDSN(t, newSchema(t))
		next := storetest.MigrationFS(known, fstest.MapFS{
			fmt.Sprintf("migrations/%04d_extra.sql", latest+1): {Data: []byte("CREATE TABLE extra (x integer);")},
		})
		for range 2 {
			if err := d.migrate(ctx, next); err != nil {
				t.Fatalf("migrate: %v", err)
			}
		}
		if v, _ := d.SchemaVersion(ctx); v != latest+1 {
			t.Fatalf("version %d, want %d", v, latest+1)
		}
		if _, err := d.pool.Exec(ctx, "INSERT INTO extra (x) VALUES (1)"); err != nil {
			t.Fatalf("the new migration was not applied: %v", err)
		}
	})

	// Branches number their migrations ahead of time (0002, 0003 and 0004
	// written at once): a database migrated by the binary that had only
	// 0001 and 0004 gets 0002 and 0003 when a later binary brings them.
	t.Run("a migration that fills a gap is applied later, in order", func(t *testing.T) {
		d := openDSN(t, newSchema(t))
		gapped := storetest.MigrationFS(known, fstest.MapFS{
			fmt.Sprintf("migrations/%04d_late.sql", latest+5): {Data: []byte("CREATE TABLE late (x integer);")},
		})
		if err := d.migrate(ctx, gapped); err != nil {
			t.Fatalf("migrate with a gap: %v", err)
		}
		filled := fstest.MapFS{}
		for k, v := range gapped {
			filled[k] = v
		}
		filled[fmt.Sprintf("migrations/%04d_filler.sql", latest+2)] = &fstest.MapFile{Data: []byte("CREATE TABLE filler (x integer);")}
		if err := d.migrate(ctx, filled); err != nil {
			t.Fatalf("migrate the filler: %v", err)
		}
		for _, table := range []string{"late", "filler"} {
			if _, err := d.pool.Exec(ctx, "INSERT INTO "+table+" (x) VALUES (1)"); err != nil {
				t.Fatalf("table %s missing: %v", table, err)
			}
		}
		if rows := countRows(t, d); rows != len(known)+2 {
			t.Fatalf("%d migrations recorded, want %d", rows, len(known)+2)
		}
		// The old binary, without the filler, now meets an unknown one.
		if err := d.migrate(ctx, gapped); !errors.Is(err, ErrSchemaTooNew) {
			t.Fatalf("migrate without the filler = %v, want ErrSchemaTooNew", err)
		}
	})

	t.Run("a failing migration leaves the schema as it was", func(t *testing.T) {
		d := openDSN(t, newSchema(t))
		broken := storetest.MigrationFS(known, fstest.MapFS{
			fmt.Sprintf("migrations/%04d_half.sql", latest+1): {Data: []byte("CREATE TABLE half (x integer); SELECT * FROM no_such_table;")},
		})
		if err := d.migrate(ctx, broken); err == nil {
			t.Fatal("broken migration applied")
		}
		if v, _ := d.SchemaVersion(ctx); v != latest {
			t.Fatalf("version %d, want %d", v, latest)
		}
		if _, err := d.pool.Exec(ctx, "INSERT INTO half (x) VALUES (1)"); err == nil {
			t.Fatal("half of a failed migration was kept")
		}
	})

	t.Run("a database from a newer binary is refused", func(t *testing.T) {
		dsn := newSchema(t)
		d := openDSN(t, dsn)
		if _, err := d.pool.Exec(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'future', now())", latest+1); err != nil {
			t.Fatal(err)
		}
		d2, err := Open(ctx, dsn)
		if err == nil {
			d2.Close()
			t.Fatal("Open accepted a schema newer than the binary")
		}
		if !errors.Is(err, ErrSchemaTooNew) {
			t.Fatalf("err = %v, want ErrSchemaTooNew", err)
		}
	})
}

// The SQLite and PostgreSQL stores have the same migrations, by number and
// name, so that a schema version means the same on both: a migration added
// to one and not ported to the other fails here.
func TestMigrationNames(t *testing.T) {
	names := func(fsys fs.FS) []string {
		t.Helper()
		ms, err := store.LoadMigrations(fsys)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, fmt.Sprintf("%04d_%s", m.Version, m.Name))
		}
		return out
	}
	got := names(migrationFiles)
	want := names(os.DirFS(filepath.Join("..", "sqlite")))
	if len(got) == 0 || got[0] != "0001_initial" || !slices.Equal(got, want) {
		t.Fatalf("postgres migrations %v, sqlite migrations %v: want the same, 0001_initial first", got, want)
	}
}

func TestPoolConfig(t *testing.T) {
	tests := []struct {
		name        string
		dsn         string
		maxConns    int32
		connTimeout time.Duration
	}{
		{"a URI gets the default pool size and connect timeout", "postgres://ck@db.example/clusterkeys", DefaultMaxConns, DefaultConnectTimeout},
		{"a unix socket directory and port in the query", "postgres:///clusterkeys?host=/run/pg&port=5433", DefaultMaxConns, DefaultConnectTimeout},
		{"postgresql:// is the same scheme", "postgresql://ck@db.example/clusterkeys", DefaultMaxConns, DefaultConnectTimeout},
		{"pool_max_conns and connect_timeout in the string win", "postgres://ck@db.example/ck?pool_max_conns=2&connect_timeout=9", 2, 9 * time.Second},
		{"libpq key=value pairs", "host=/run/pg port=5433 dbname=ck pool_max_conns=3", 3, DefaultConnectTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := poolConfig(tt.dsn)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MaxConns != tt.maxConns || cfg.ConnConfig.ConnectTimeout != tt.connTimeout || cfg.HealthCheckPeriod != HealthCheckPeriod {
				t.Fatalf("MaxConns %d, ConnectTimeout %v, HealthCheckPeriod %v", cfg.MaxConns, cfg.ConnConfig.ConnectTimeout, cfg.HealthCheckPeriod)
			}
		})
	}
	t.Run("the unix socket form reaches the socket directory", func(t *testing.T) {
		cfg, err := poolConfig("postgres:///clusterkeys?host=/run/pg&port=5433")
		if err != nil {
			t.Fatal(err)
		}
		if cc := cfg.ConnConfig; cc.Host != "/run/pg" || cc.Port != 5433 || cc.Database != "clusterkeys" {
			t.Fatalf("host %q port %d database %q", cc.Host, cc.Port, cc.Database)
		}
	})
}

// A connection string may hold a password: no error of Open shows it.
func TestPasswordNeverInErrors(t *testing.T) {
	const pw = "s3cr3t-pw-5a7e"
	tests := []struct {
		name string
		dsn  string
	}{
		{"an unparsable URI", "postgres://ck:" + pw + "@db.example:notaport/ck"},
		{"an unparsable key=value string", "host=/nowhere password=" + pw + " port=x"},
		{"a server that is not there", "postgres://ck:" + pw + "@/ck?host=/nonexistent-dir&connect_timeout=1"},
		{"a password parameter", "postgres:///ck?host=/nonexistent-dir&password=" + pw + "&connect_timeout=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			d, err := Open(ctx, tt.dsn)
			if err == nil {
				d.Close()
				t.Fatal("Open succeeded")
			}
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
	t.Run("a server that is not there is unavailable", func(t *testing.T) {
		_, err := Open(context.Background(), "postgres:///ck?host=/nonexistent-dir&connect_timeout=1")
		if !errors.Is(err, api.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	})
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		closed bool
		want   error
	}{
		{"no rows is not found", pgx.ErrNoRows, false, api.ErrNotFound},
		{"a unique violation is a conflict", &pgconn.PgError{Code: "23505"}, false, api.ErrConflict},
		{"a missing referenced row is not found", &pgconn.PgError{Code: "23503"}, false, api.ErrNotFound},
		{"a serialization failure is a conflict", &pgconn.PgError{Code: "40001"}, false, api.ErrConflict},
		{"a deadlock is a conflict", &pgconn.PgError{Code: "40P01"}, false, api.ErrConflict},
		{"an administrator shutdown is unavailable", &pgconn.PgError{Code: "57P01"}, false, api.ErrUnavailable},
		{"a server starting up is unavailable", &pgconn.PgError{Code: "57P03"}, false, api.ErrUnavailable},
		{"too many connections is unavailable", &pgconn.PgError{Code: "53300"}, false, api.ErrUnavailable},
		{"a connection exception is unavailable", &pgconn.PgError{Code: "08006"}, false, api.ErrUnavailable},
		{"a lost connection is unavailable", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), false, api.ErrUnavailable},
		{"a closed connection is unavailable", pgconn.ErrConnClosed, false, api.ErrUnavailable},
		{"a deadline is unavailable", context.DeadlineExceeded, false, api.ErrUnavailable},
		{"any error of a closed store is unavailable", errors.New("closed pool"), true, api.ErrUnavailable},
		{"a caller's cancel maps to nothing", context.Canceled, false, nil},
		{"a syntax error maps to nothing", &pgconn.PgError{Code: "42601"}, false, nil},
		{"another error maps to nothing", errors.New("boom"), false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err, tt.closed); got != tt.want {
				t.Fatalf("classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
