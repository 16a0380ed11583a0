package sqlite

import (
	"context"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// TestCertificatesUseIndexes checks, through SQLite's query plan, that
// every filter and the paging run on an index in listing order: no full
// scan of the table and no sort of the matching rows.
func TestCertificatesUseIndexes(t *testing.T) {
	d := openTest(t)
	after := &store.CertificateKey{IssuedAt: t0, Serial: "ab"}
	tests := []struct {
		name string
		q    store.CertificateQuery
		// pending: valid and expired also read the revocations still
		// ahead by their time and sort those alone (migration 0007).
		pending bool
	}{
		{"the first page", store.CertificateQuery{}, false},
		{"a later page", store.CertificateQuery{After: after}, false},
		{"by user", store.CertificateQuery{User: "alice", After: after}, false},
		{"by serial", store.CertificateQuery{Serial: "ab"}, false},
		{"by generation", store.CertificateQuery{Generation: 2, After: after}, false},
		{"revoked", store.CertificateQuery{Status: store.StatusRevoked, Now: t0, After: after}, false},
		{"valid", store.CertificateQuery{Status: store.StatusValid, Now: t0}, true},
		{"expired", store.CertificateQuery{Status: store.StatusExpired, Now: t0}, true},
		{"valid, a later page of one user", store.CertificateQuery{Status: store.StatusValid, Now: t0, User: "alice", After: after}, false},
	}
	for _, tt := range tests {
		q := tt.q
		q.Cluster, q.Limit = "c", 10
		t.Run(tt.name, func(t *testing.T) {
			query, args, err := certificatesSQL(q)
			if err != nil {
				t.Fatal(err)
			}
			plan := queryPlan(t, d, query, args...)
			if tt.pending {
				// The never revoked in listing order, never the revoked
				// history; the revocations ahead by time, then sorted.
				unrevoked := strings.Index(plan, "issued_certificates_unrevoked_key")
				ahead := strings.Index(plan, "issued_certificates_by_revocation (cluster=? AND revoked_at>?)")
				if strings.Contains(plan, "SCAN ") || unrevoked < 0 || ahead < 0 || strings.Index(plan, "TEMP B-TREE") < ahead {
					t.Fatalf("plan does not read the never revoked in order and the revocations ahead by time:\n%s", plan)
				}
				return
			}
			if strings.Contains(plan, "SCAN ") || strings.Contains(plan, "TEMP B-TREE") {
				t.Fatalf("plan reads the whole table or sorts:\n%s", plan)
			}
		})
	}
	t.Run("a CA show reads the trusted generations through an index", func(t *testing.T) {
		plan := queryPlan(t, d, `SELECT `+genColumns+` FROM ca_generations WHERE cluster = ?1 AND generation = ?2
		UNION ALL
		SELECT `+genColumns+` FROM ca_generations WHERE cluster = ?1 AND trusted_until > ?3 AND generation <> ?2
		ORDER BY generation DESC`, "c", 2, formatTime(t0))
		if strings.Contains(plan, "SCAN ca_generations") {
			t.Fatalf("plan scans the generations:\n%s", plan)
		}
	})
}

// queryPlan returns SQLite's EXPLAIN QUERY PLAN of query, one step a line.
func queryPlan(t *testing.T, d *DB, query string, args ...any) string {
	t.Helper()
	rows, err := d.db.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		b.WriteString(detail + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
