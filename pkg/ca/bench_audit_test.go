package ca

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/fakeclock"
	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// benchAuthority returns an Authority over a real SQLite store in dir,
// software custody, and cluster c1 created; also the store and the clock.
func benchAuthority(b *testing.B, dir string) (*Authority, *sqlite.DB, *fakeclock.Clock) {
	b.Helper()
	db, custody := openInstance(b, filepath.Join(dir, "clusterkeys.db"), newMasterKey(b))
	clk := fakeclock.New(testStart)
	a := New(db, custody, Options{Now: clk.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if _, _, err := a.CreateCA(as(member), "c1", CreateRequest{}); err != nil {
		b.Fatal(err)
	}
	return a, db, clk
}

// bulkCertificates inserts n registry entries of cluster c1, generation 1,
// straight into the SQLite file in one transaction: n signs would take
// far longer than what is measured. Every 1000th entry is alice's, the
// others bob's; serials are %032x of 1..n, issued a second apart.
func bulkCertificates(b *testing.B, dir string, n int) {
	b.Helper()
	raw, err := sql.Open("sqlite", filepath.Join(dir, "clusterkeys.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	tx, err := raw.Begin()
	if err != nil {
		b.Fatal(err)
	}
	st, err := tx.Prepare(`INSERT INTO issued_certificates
		(cluster, serial, generation, subject, profile, user_name, project, not_before, not_after, issued_at)
		VALUES ('c1', ?, 1, ?, 'client', ?, 'p1', ?, ?, ?)`)
	if err != nil {
		b.Fatal(err)
	}
	const layout = "2006-01-02T15:04:05.000000000Z"
	for i := 1; i <= n; i++ {
		issued := testStart.Add(time.Duration(i) * time.Second)
		user := "bob"
		if i%1000 == 0 {
			user = "alice"
		}
		if _, err := st.Exec(fmt.Sprintf("%032x", i), fmt.Sprintf("CN=%s-%d", user, i), user,
			issued.Add(-time.Minute).Format(layout), issued.Add(720*time.Hour).Format(layout), issued.Format(layout)); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAuditList measures the registry listing of a cluster with 300k
// entries through the Authority and the real SQLite store: the default
// (first) page, as GET /v1/clusters/{cluster}/certificates answers it
// without parameters.
func BenchmarkAuditList(b *testing.B) {
	const n = 300_000
	dir := b.TempDir()
	a, _, _ := benchAuthority(b, dir)
	bulkCertificates(b, dir, n)
	ctx := as(member)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Certificates(ctx, "c1"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuditListQueries measures pages and filters of the same 300k
// entries: a full page, a page deep in the registry, each filter, and the
// worst case of a status filter (no entry matches, so the index is walked
// to its end).
func BenchmarkAuditListQueries(b *testing.B) {
	const n = 300_000
	dir := b.TempDir()
	a, _, _ := benchAuthority(b, dir)
	bulkCertificates(b, dir, n)
	ctx := as(member)
	deep := encodeCursor(store.CertificateKey{IssuedAt: testStart.Add(1000 * time.Second), Serial: fmt.Sprintf("%032x", 1000)})
	for _, tt := range []struct {
		name string
		req  ListRequest
	}{
		{"limit=1000", ListRequest{Limit: 1000}},
		{"limit=1000,deep", ListRequest{Limit: 1000, Next: deep}},
		{"serial", ListRequest{Serial: fmt.Sprintf("%032x", 7)}},
		{"user=alice", ListRequest{User: "alice"}},
		{"generation=1", ListRequest{Generation: 1}},
		{"status=valid", ListRequest{Status: store.StatusValid}},
		{"status=revoked,none", ListRequest{Status: store.StatusRevoked}},
		{"status=expired,none", ListRequest{Status: store.StatusExpired}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.ListCertificates(ctx, "c1", tt.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSignAfterRekeys measures a sign and a CA show through the
// Authority and the real SQLite store after 0 and 700 rekeys.
func BenchmarkSignAfterRekeys(b *testing.B) {
	for _, rekeys := range []int{0, 700} {
		dir := b.TempDir()
		a, db, clk := benchAuthority(b, dir)
		ctx := context.Background()
		for g := 1; g < rekeys; g++ {
			clk.Advance(time.Second)
			next := store.CAGeneration{
				Cluster: "c1", Generation: g + 1, KeyRef: fmt.Sprintf("ca/c1/%d/bulk", g+1),
				CertificateDER: make([]byte, 450), KeyAlgorithm: "ecdsa-p256",
				NotBefore: clk.Now(), NotAfter: clk.Now().AddDate(1, 0, 0), CreatedAt: clk.Now(),
			}
			if err := db.Rekey(ctx, "c1", g, next, clk.Now(), clk.Now()); err != nil {
				b.Fatal(err)
			}
		}
		if rekeys > 0 {
			// The last rekey through the Authority: a real active key.
			if _, err := a.Rekey(as(member), "c1", RekeyRequest{}); err != nil {
				b.Fatal(err)
			}
		}
		req := SignRequest{CSR: makeCSR(b, csrOptions{cn: "alice"})}
		b.Run(fmt.Sprintf("sign,rekeys=%d", rekeys), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Sign(as(member), "c1", req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("show,rekeys=%d", rekeys), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.CA(as(member), "c1"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
