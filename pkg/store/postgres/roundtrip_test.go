package postgres

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/clusterkeys/clusterkeys/pkg/store/storetest"
)

// countingConn counts the writes to a connection: pgx writes once per round
// trip (it sends a round trip's messages in one write).
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// openCounting opens the store at dsn with every connection's writes
// counted in writes.
func openCounting(t *testing.T, dsn string, writes *atomic.Int64) *DB {
	t.Helper()
	cfg, err := poolConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	// The pool pings a connection idle for a second before handing it
	// out, which on a loaded machine can be the new one: not a statement.
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	var d net.Dialer
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, writes}, nil
	}
	db, err := open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// A Lambda function's cold start pays one round trip per statement: the
// schema check at Open is one round trip after the connection's start-up,
// and each statement of the first request one more. A long-running process
// prepares its statements (a round trip more the first time, none after).
func TestRoundTripsAtStart(t *testing.T) {
	tests := []struct {
		name       string
		lambda     bool
		dsnSuffix  string
		mode       pgx.QueryExecMode
		open, read int64 // round trips of Open (after the start-up message) and of a first read
	}{
		{"in a Lambda execution environment, statements are not prepared", true, "", pgx.QueryExecModeExec, 1, 1},
		{"elsewhere, each statement is prepared on its first run", false, "", pgx.QueryExecModeCacheStatement, 2, 2},
		{"the connection string's default_query_exec_mode wins in Lambda", true, "&default_query_exec_mode=cache_statement", pgx.QueryExecModeCacheStatement, 2, 2},
		{"the connection string's default_query_exec_mode wins elsewhere", false, "&default_query_exec_mode=exec", pgx.QueryExecModeExec, 1, 1},
	}
	dsn := newSchema(t)
	// Migrated once: the cold starts below find the schema up to date.
	ctx := context.Background()
	first := openDSN(t, dsn)
	storetest.CreateCluster(t, first, "c")
	first.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.lambda {
				t.Setenv(lambdaRuntimeEnv, "127.0.0.1:9001")
			} else {
				t.Setenv(lambdaRuntimeEnv, "")
			}
			cfg, err := poolConfig(dsn + tt.dsnSuffix)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.ConnConfig.DefaultQueryExecMode; got != tt.mode {
				t.Fatalf("query exec mode %v, want %v", got, tt.mode)
			}
			var writes atomic.Int64
			d := openCounting(t, dsn+tt.dsnSuffix, &writes)
			// The start-up message is the first write; then the schema check.
			if got := writes.Load() - 1; got != tt.open {
				t.Errorf("Open: %d round trips after the start-up, want %d", got, tt.open)
			}
			before := writes.Load()
			c, err := d.Cluster(ctx, "c")
			if err != nil || c.Name != "c" {
				t.Fatalf("Cluster: %+v, %v", c, err)
			}
			if got := writes.Load() - before; got != tt.read {
				t.Errorf("first read: %d round trips, want %d", got, tt.read)
			}
			// Parameters are still parameters: a name that would end the
			// string in SQL is only a name nobody has.
			if _, err := d.Cluster(ctx, "c' OR '1'='1"); err == nil {
				t.Error("a quote in a parameter matched a row")
			}
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := d.Ping(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
