package sqlite

import (
	"context"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/storetest"
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
		// pending: valid and expired also read, and sort, the few rows
		// found by a bounded range (migrations 0007 and 0008).
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
		{"valid, a later page", store.CertificateQuery{Status: store.StatusValid, Now: t0, After: after}, true},
		{"expired, a later page", store.CertificateQuery{Status: store.StatusExpired, Now: t0, After: after}, true},
		{"valid, a later page of one user", store.CertificateQuery{Status: store.StatusValid, Now: t0, User: "alice", After: after}, true},
		{"expired, of one generation", store.CertificateQuery{Status: store.StatusExpired, Now: t0, Generation: 1}, true},
	}
	for _, tt := range tests {
		q := tt.q
		q.Cluster, q.Limit = "c", 10
		t.Run(tt.name, func(t *testing.T) {
			if err := store.CheckCertificateQuery(q); err != nil {
				t.Fatal(err)
			}
			query, args := certificatesSQL(q, false)
			plan := queryPlan(t, d, query, args...)
			if tt.pending {
				// One arm walks in listing order (the never revoked, or
				// one user's); every arm that is sorted first reads a
				// range that holds few rows: the never revoked whose
				// lapsed mark disagrees with their status, by not_after
				// (migration 0008), or the revocations still ahead, by
				// time (0007).
				if strings.Contains(plan, "SCAN ") {
					t.Fatalf("plan reads a whole table:\n%s", plan)
				}
				lines := strings.Split(plan, "\n")
				walks := 0
				for i, l := range lines {
					if !strings.HasPrefix(l, "SEARCH ") {
						continue
					}
					if i+1 >= len(lines) || !strings.Contains(lines[i+1], "TEMP B-TREE") {
						walks++
						continue
					}
					if !strings.Contains(l, "issued_certificates_live_expiry (cluster=? AND lapsed=? AND not_after") &&
						!strings.Contains(l, "issued_certificates_by_revocation (cluster=? AND revoked_at>?)") {
						t.Fatalf("plan sorts an arm that is not a bounded range:\n%s", plan)
					}
				}
				if walks != 1 {
					t.Fatalf("plan walks %d arms in listing order, want 1:\n%s", walks, plan)
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

// TestBacklogListingsAreExact checks the listing a large backlog of
// unmarked expired certificates gets (walked, not sorted) against the
// statuses (storetest.BacklogListings).
func TestBacklogListingsAreExact(t *testing.T) {
	storetest.BacklogListings(t, newStore, func(d storetest.Store, q store.CertificateQuery) ([]store.IssuedCertificate, error) {
		return d.(*DB).certificates(context.Background(), q, true)
	})
}

// TestBacklogListingWalks checks that with a large backlog the unmarked
// expired are walked in listing order, as before migration 0008, not read
// by not_after and sorted.
func TestBacklogListingWalks(t *testing.T) {
	d := openTest(t)
	q := store.CertificateQuery{Cluster: "c", Status: store.StatusExpired, Now: t0, Limit: 10}
	if err := store.CheckCertificateQuery(q); err != nil {
		t.Fatal(err)
	}
	query, args := certificatesSQL(q, true)
	plan := queryPlan(t, d, query, args...)
	if strings.Count(plan, "issued_certificates_live_key (cluster=? AND lapsed=?)") != 2 ||
		strings.Contains(plan, "issued_certificates_live_expiry (cluster=? AND lapsed=? AND not_after<?)") {
		t.Fatalf("plan does not walk both sides of live_key:\n%s", plan)
	}
}
