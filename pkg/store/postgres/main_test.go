package postgres

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/clusterkeys/clusterkeys/internal/need"
	"github.com/clusterkeys/clusterkeys/pkg/store/storetest"
)

// server is the private PostgreSQL server of this package's tests, started
// once by TestMain with test/scripts/postgres.sh.
var server struct {
	dir     string
	dsn     string // of the database clusterkeys
	missing string // why there is no server, when there is none
	admin   *pgxpool.Pool
	schemas atomic.Int64
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres"); len(bins) == 0 {
		server.missing = "no PostgreSQL server under /usr/lib/postgresql: apt-get install postgresql (or test/scripts/postgres.sh install)"
		return m.Run()
	}
	// PostgreSQL runs as nobody when the tests run as root: the directory
	// must be reachable (MkdirTemp makes it 0700).
	dir, err := os.MkdirTemp("", "clusterkeys-pg-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o711); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	server.dir = dir
	out, err := pgScript("start", dir)
	if err != nil {
		server.missing = "test/scripts/postgres.sh start failed: " + err.Error()
		return m.Run()
	}
	defer pgScript("stop", dir)
	server.dsn = out
	server.admin, err = pgxpool.New(context.Background(), server.dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect to the test server:", err)
		return 1
	}
	defer server.admin.Close()
	return m.Run()
}

// pgScript runs test/scripts/postgres.sh with args and returns its stdout.
func pgScript(args ...string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "..", "test", "scripts", "postgres.sh")
	cmd := exec.Command("bash", append([]string{script}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// needServer skips t when there is no PostgreSQL server, or fails it with
// CI=true, where no test may skip for a missing component.
func needServer(t testing.TB) {
	t.Helper()
	if server.missing != "" {
		need.Missing(t, server.missing)
	}
}

// newSchema creates an empty schema for t, dropped at cleanup, and returns
// a DSN whose search_path is that schema: every test has a database of its
// own on the one server.
func newSchema(t testing.TB) string {
	t.Helper()
	needServer(t)
	ctx := context.Background()
	schema := fmt.Sprintf("t%d", server.schemas.Add(1))
	if _, err := server.admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	// Registered first, so it runs after the stores' Close.
	t.Cleanup(func() {
		var err error
		for range 3 { // the outage tests leave closed connections in the pool
			if _, err = server.admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err == nil {
				return
			}
		}
		t.Errorf("drop schema %s: %v", schema, err)
	})
	return server.dsn + "&search_path=" + schema
}

// openDSN opens the store at dsn, closed at cleanup.
func openDSN(t testing.TB, dsn string) *DB {
	t.Helper()
	d, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

// newStore is the storetest.NewStore of PostgreSQL: a new schema, and
// further pools on that schema as further instances.
func newStore(t testing.TB) (storetest.Store, func() storetest.Store) {
	t.Helper()
	dsn := newSchema(t)
	return openDSN(t, dsn), func() storetest.Store { return openDSN(t, dsn) }
}
