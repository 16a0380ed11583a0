package postgres

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/storetest"
)

// TestMigrationMarksPrivilegedCertificatesAlreadyIssued opens, with this
// binary, a database written by one that knew only migration 1: the rows it
// recorded come back marked privileged by their subject, whatever the case
// of "system:" (SQLite's LIKE ignores ASCII case; the port uses ILIKE).
func TestMigrationMarksPrivilegedCertificatesAlreadyIssued(t *testing.T) {
	ctx := context.Background()
	known := storetest.Migrations(t, migrationFiles)
	dsn := newSchema(t)
	cfg, err := poolConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	old := &DB{pool: pool}
	defer old.Close()
	first := storetest.MigrationFS(known[:1], nil)
	if err := old.migrate(ctx, first); err != nil {
		t.Fatal(err)
	}
	storetest.CreateCluster(t, old, "c")
	storetest.PrivilegedMigration(t, func(ic store.IssuedCertificate) error {
		_, err := pool.Exec(ctx, `INSERT INTO issued_certificates
			(cluster, serial, generation, subject, profile, user_name, project, not_before, not_after, issued_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			ic.Cluster, ic.Serial, ic.Generation, ic.Subject, ic.Profile, ic.User, ic.Project,
			ts(ic.NotBefore), ts(ic.NotAfter), ts(ic.IssuedAt))
		return err
	}, func() storetest.Store {
		old.Close()
		return openDSN(t, dsn)
	})
}

// TestCertificatesUseIndexes checks, through PostgreSQL's plan with
// sequential scans and sorts priced out (the test tables are tiny, so the
// planner would otherwise scan them), that every filter and the paging can
// run on an index in listing order: no scan of the table, no sort.
func TestCertificatesUseIndexes(t *testing.T) {
	ctx := context.Background()
	d := openDSN(t, newSchema(t))
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, set := range []string{"SET enable_seqscan = off", "SET enable_sort = off"} {
		if _, err := conn.Exec(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	defer conn.Exec(context.Background(), "RESET ALL")
	t0 := storetest.T0
	after := &store.CertificateKey{IssuedAt: t0, Serial: "ab"}
	tests := []struct {
		name string
		q    store.CertificateQuery
	}{
		{"the first page", store.CertificateQuery{}},
		{"a later page", store.CertificateQuery{After: after}},
		{"by user", store.CertificateQuery{User: "alice", After: after}},
		{"by serial", store.CertificateQuery{Serial: "ab"}},
		{"by generation", store.CertificateQuery{Generation: 2, After: after}},
		{"revoked", store.CertificateQuery{Status: store.StatusRevoked, Now: t0, After: after}},
		// valid and expired sort the few rows whose lapsed mark
		// disagrees with their status: TestStatusListingPlans checks them
		// on a table the planner has statistics of.
	}
	plan := func(t *testing.T, query string, args ...any) string {
		t.Helper()
		return explain(t, conn.Conn(), "EXPLAIN "+query, args...)
	}
	for _, tt := range tests {
		q := tt.q
		q.Cluster, q.Limit = "c", 10
		t.Run(tt.name, func(t *testing.T) {
			if err := store.CheckCertificateQuery(q); err != nil {
				t.Fatal(err)
			}
			query, args := certificatesSQL(q, false)
			p := plan(t, query, args...)
			// A sort node, not the sort key of a Merge Append, which merges
			// the ordered arms of valid and expired.
			if strings.Contains(p, "Seq Scan") || strings.Contains(p, "Sort  (") {
				t.Fatalf("plan reads the whole table or sorts:\n%s", p)
			}
		})
	}
	t.Run("a CA show reads the trusted generations through an index", func(t *testing.T) {
		p := plan(t, `SELECT `+genColumns+` FROM ca_generations WHERE cluster = $1 AND generation = $2
		UNION ALL
		SELECT `+genColumns+` FROM ca_generations WHERE cluster = $1 AND trusted_until > $3 AND generation <> $2
		ORDER BY generation DESC`, "c", 2, ts(t0))
		if strings.Contains(p, "Seq Scan") {
			t.Fatalf("plan scans the generations:\n%s", p)
		}
	})
}

// TestStatusListingPlans checks PostgreSQL's plans of the listings (by
// status, unfiltered, by serial) on a cluster whose statistics are those of a grown registry (half
// expired and marked, half valid, a few expired and not marked yet, a few
// revocations ahead): one arm walks the rows whose mark agrees with the
// status in listing order; the rows whose mark disagrees are found through
// the expression indexes of migration 0008, never by walking or scanning
// the cluster. Before 0008, an expired page walked every valid row.
func TestStatusListingPlans(t *testing.T) {
	ctx := context.Background()
	d := openDSN(t, newSchema(t))
	storetest.CreateCluster(t, d, "c")
	now := storetest.T0.Add(365 * 24 * time.Hour)
	const n = 20000
	i := 0
	if _, err := d.pool.CopyFrom(ctx, pgx.Identifier{"issued_certificates"},
		[]string{"cluster", "serial", "generation", "subject", "profile", "user_name", "project", "not_before", "not_after", "issued_at", "revoked_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			issued := now.Add(-2*365*24*time.Hour + time.Duration(i)*time.Hour)
			var revoked any
			if i%1000 == 1 {
				revoked = now.Add(time.Hour) // a revocation still ahead
			}
			row := []any{"c", fmt.Sprintf("%032x", i), 1, "CN=u", "client", fmt.Sprintf("user%d", i%50), "p",
				issued, issued.Add(365 * 24 * time.Hour), issued, revoked}
			i++
			return row, nil
		})); err != nil {
		t.Fatal(err)
	}
	// Marked a while ago: the certificates expired since are not.
	if _, err := d.MarkExpired(ctx, "c", now.Add(-20*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.pool.Exec(ctx, "ANALYZE issued_certificates"); err != nil {
		t.Fatal(err)
	}
	after := &store.CertificateKey{IssuedAt: now.Add(-400 * 24 * time.Hour), Serial: "ab"}
	tests := []struct {
		name string
		q    store.CertificateQuery
		// uses are the indexes the plan must read; with status, it reads
		// no other but the revoked rows'.
		uses []string
	}{
		{"expired", store.CertificateQuery{Status: store.StatusExpired},
			[]string{"issued_certificates_live_key", "issued_certificates_unmarked_expiry"}},
		{"expired, a later page", store.CertificateQuery{Status: store.StatusExpired, After: after},
			[]string{"issued_certificates_live_key", "issued_certificates_unmarked_expiry"}},
		{"valid", store.CertificateQuery{Status: store.StatusValid},
			[]string{"issued_certificates_live_key", "issued_certificates_lapsed_expiry"}},
		{"valid, a later page", store.CertificateQuery{Status: store.StatusValid, After: after},
			[]string{"issued_certificates_live_key", "issued_certificates_lapsed_expiry"}},
		{"the first page", store.CertificateQuery{}, []string{"issued_certificates_by_key"}},
		{"a later page", store.CertificateQuery{After: after}, []string{"issued_certificates_by_key"}},
		{"by serial", store.CertificateQuery{Serial: "00000000000000000000000000000007"},
			[]string{"issued_certificates_cluster_serial_key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.q
			q.Cluster, q.Limit, q.Now = "c", 100, now
			if err := store.CheckCertificateQuery(q); err != nil {
				t.Fatal(err)
			}
			query, args := certificatesSQL(q, false)
			p := explain(t, d.pool, "EXPLAIN "+query, args...)
			for _, u := range tt.uses {
				if strings.Contains(p, "Seq Scan") || !strings.Contains(p, u) {
					t.Fatalf("plan does not read %s, or scans:\n%s", u, p)
				}
			}
			if tt.q.Status == "" {
				return
			}
			// Only the revoked rows are read through an index that is
			// not in this list.
			for _, l := range strings.Split(p, "\n") {
				if strings.Contains(l, "Index") && strings.Contains(l, " using ") &&
					!slices.ContainsFunc(tt.uses, func(u string) bool { return strings.Contains(l, u) }) &&
					!strings.Contains(l, "issued_certificates_by_revocation") && !strings.Contains(l, "issued_certificates_revoked_key") {
					t.Fatalf("plan reads an arm through another index:\n%s", p)
				}
			}
		})
	}
}

// TestBacklogListingsAreExact checks the listing a large backlog of
// unmarked expired certificates gets (selected by its columns, walked)
// against the statuses (storetest.BacklogListings).
func TestBacklogListingsAreExact(t *testing.T) {
	storetest.BacklogListings(t, newStore, func(d storetest.Store, q store.CertificateQuery) ([]store.IssuedCertificate, error) {
		return d.(*DB).certificates(context.Background(), q, true)
	})
}

// TestRekeyedListingPlans checks the plans of the unfiltered listing and
// of the generation filter on a registry shaped like the bench's rekeyed
// cluster (test/bench TestRegistryGrowth): 1,000 retired generations whose
// revoked certificates interleave in time, beside a small cluster. Both
// the plan PostgreSQL makes for the arguments and the generic plan it
// may keep for a prepared statement (pgx prepares these listings on each
// connection) walk an index in listing order and stop at a page: none
// scans the table, sorts, or reads the revoked history through the
// revoked rows' indexes.
func TestRekeyedListingPlans(t *testing.T) {
	ctx := context.Background()
	d := openDSN(t, newSchema(t))
	storetest.CreateCluster(t, d, "small")
	storetest.CreateCluster(t, d, "gens")
	const generations, perGeneration, small = 1000, 20, 300
	if _, err := d.pool.Exec(ctx, `INSERT INTO ca_generations (cluster, generation, key_ref, certificate_der, key_algorithm)
		SELECT 'gens', g, 'gens-' || g, '\x00', 'ecdsa-p256' FROM generate_series(2, $1::int) g`, generations+1); err != nil {
		t.Fatal(err)
	}
	now := storetest.T0.Add(2 * 365 * 24 * time.Hour)
	revoked := now.Add(-time.Minute)
	i := 0
	if _, err := d.pool.CopyFrom(ctx, pgx.Identifier{"issued_certificates"},
		[]string{"cluster", "serial", "generation", "subject", "profile", "user_name", "project", "not_before", "not_after", "issued_at", "revoked_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == small+generations*perGeneration {
				return nil, nil
			}
			cluster, gen, k, n, rev := "small", 1, i, small, any(nil)
			if i >= small {
				// Each generation's certificates spread over two years,
				// as the bench loads them.
				cluster, gen, k, n, rev = "gens", 1+(i-small)/perGeneration, (i-small)%perGeneration, perGeneration, revoked
			}
			issued := now.Add(-2*365*24*time.Hour + time.Duration(k)*(2*365*24*time.Hour/time.Duration(n)) + time.Duration(gen)*time.Microsecond)
			row := []any{cluster, fmt.Sprintf("%032x", i), gen, "CN=u", "client", "u", "p",
				issued, issued.Add(365 * 24 * time.Hour), issued, rev}
			i++
			return row, nil
		})); err != nil {
		t.Fatal(err)
	}
	if _, err := d.pool.Exec(ctx, "ANALYZE issued_certificates"); err != nil {
		t.Fatal(err)
	}
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	defer conn.Exec(context.Background(), "RESET plan_cache_mode") //nolint:errcheck // the connection goes back to the pool either way
	after := &store.CertificateKey{IssuedAt: now.Add(-400 * 24 * time.Hour), Serial: "ab"}
	tests := []struct {
		name string
		q    store.CertificateQuery
		uses string
	}{
		{"the first page", store.CertificateQuery{}, "issued_certificates_by_key"},
		{"a later page", store.CertificateQuery{After: after}, "issued_certificates_by_key"},
		{"the oldest generation", store.CertificateQuery{Generation: 1}, "issued_certificates_by_generation_key"},
		{"the newest retired generation", store.CertificateQuery{Generation: generations}, "issued_certificates_by_generation_key"},
		{"a generation, a later page", store.CertificateQuery{Generation: 1, After: after}, "issued_certificates_by_generation_key"},
	}
	for n, tt := range tests {
		for _, cluster := range []string{"gens", "small"} {
			for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
				t.Run(tt.name+", "+cluster+", "+mode, func(t *testing.T) {
					q := tt.q
					q.Cluster, q.Limit = cluster, 101
					if err := store.CheckCertificateQuery(q); err != nil {
						t.Fatal(err)
					}
					query, args := certificatesSQL(q, false)
					name := fmt.Sprintf("rekeyed_%d_%s_%s", n, cluster, mode)
					if _, err := conn.Exec(ctx, "SET plan_cache_mode = "+mode); err != nil {
						t.Fatal(err)
					}
					if _, err := conn.Exec(ctx, "PREPARE "+name+" AS "+query); err != nil {
						t.Fatal(err)
					}
					p := explainExecute(t, conn.Conn(), name, args)
					if strings.Contains(p, "Seq Scan") || strings.Contains(p, "Sort") || !strings.Contains(p, tt.uses) ||
						strings.Contains(p, "revoked_key") || strings.Contains(p, "by_revocation") {
						t.Fatalf("plan does not walk %s alone in listing order:\n%s", tt.uses, p)
					}
				})
			}
		}
	}
}

// explainExecute returns the plan of EXECUTE name(args), the arguments as
// literals (certificatesSQL's: text, integers and times).
func explainExecute(t *testing.T, conn *pgx.Conn, name string, args []any) string {
	t.Helper()
	lits := make([]string, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			lits[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
		case int:
			lits[i] = strconv.Itoa(v)
		case pgtype.Timestamptz:
			lits[i] = "'" + v.Time.UTC().Format(time.RFC3339Nano) + "'::timestamptz"
		default:
			t.Fatalf("argument %d of type %T", i, a)
		}
	}
	return explain(t, conn, "EXPLAIN EXECUTE "+name+"("+strings.Join(lits, ", ")+")")
}

// querier is what explain runs its statement on: a pool or a connection.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// explain runs an EXPLAIN statement and returns its plan, a line each.
func explain(t *testing.T, conn querier, statement string, args ...any) string {
	t.Helper()
	rows, err := conn.Query(context.Background(), statement, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		b.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
