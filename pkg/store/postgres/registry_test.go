package postgres

import (
	"context"
	"strings"
	"testing"

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
		{"valid", store.CertificateQuery{Status: store.StatusValid, Now: t0}},
		{"expired", store.CertificateQuery{Status: store.StatusExpired, Now: t0}},
	}
	plan := func(t *testing.T, query string, args ...any) string {
		t.Helper()
		rows, err := conn.Query(ctx, "EXPLAIN "+query, args...)
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
	for _, tt := range tests {
		q := tt.q
		q.Cluster, q.Limit = "c", 10
		t.Run(tt.name, func(t *testing.T) {
			query, args, err := certificatesSQL(q)
			if err != nil {
				t.Fatal(err)
			}
			p := plan(t, query, args...)
			// A sort node, not the sort key of a Merge Append, which merges
			// the ordered arms of valid and expired.
			if strings.Contains(p, "Seq Scan") || strings.Contains(p, "Sort  (") {
				t.Fatalf("plan reads the whole table or sorts:\n%s", p)
			}
			// valid and expired read the never revoked through their own
			// index, never the revoked history (migration 0007).
			if q.Status == store.StatusValid || q.Status == store.StatusExpired {
				if !strings.Contains(p, "issued_certificates_unrevoked_key") || !strings.Contains(p, "Merge Append") {
					t.Fatalf("plan does not merge the never revoked, in index order, with the revocations ahead:\n%s", p)
				}
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
