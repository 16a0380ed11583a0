package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/storetest"
)

// TestRecordCertificateGroupCommit queues concurrent records behind a held
// write lock and checks that they commit in one transaction, each caller
// getting its own outcome: a duplicate serial, a missing generation and a
// missing cluster fail alone, the others are recorded.
func TestRecordCertificateGroupCommit(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	createCluster(t, d, "c")
	if err := d.RecordCertificate(ctx, storetest.Cert("c", 1, 1)); err != nil {
		t.Fatal(err)
	}
	before := d.certs.transactions.Load()

	type call struct {
		name string
		cert store.IssuedCertificate
		want error // nil, or the sentinel the error must wrap
	}
	var calls []call
	for n := 2; n <= 9; n++ {
		calls = append(calls, call{name: "new serial", cert: storetest.Cert("c", 1, n)})
	}
	calls = append(calls,
		call{name: "duplicate serial", cert: storetest.Cert("c", 1, 1), want: api.ErrConflict},
		call{name: "missing generation", cert: storetest.Cert("c", 7, 10), want: api.ErrNotFound},
	)
	// A sign's record (RequireActive) for a cluster that does not exist
	// inserts nothing and fails alone, not the whole batch.
	missing := storetest.Cert("gone", 1, 11)
	missing.RequireActive = true
	calls = append(calls, call{name: "missing cluster", cert: missing, want: api.ErrNotFound})

	d.writer <- struct{}{} // hold the write lock until every call is queued
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = d.RecordCertificate(ctx, c.cert) }()
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		d.certs.mu.Lock()
		n := len(d.certs.pending)
		d.certs.mu.Unlock()
		if n == len(calls) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d calls queued", n, len(calls))
		}
	}
	<-d.writer
	wg.Wait()

	if got := d.certs.transactions.Load() - before; got != 1 {
		t.Errorf("%d calls committed in %d transactions, want 1", len(calls), got)
	}
	for i, c := range calls {
		switch {
		case c.want == nil && errs[i] != nil:
			t.Errorf("%s %s: %v", c.name, c.cert.Serial, errs[i])
		case c.want != nil && !errors.Is(errs[i], c.want):
			t.Errorf("%s %s: error %v, want one wrapping %v", c.name, c.cert.Serial, errs[i], c.want)
		}
	}
	got, err := d.Certificates(ctx, storetest.All("c"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 9 {
		t.Errorf("registry has %d certificates, want 9 (the first and the 8 new ones)", len(got))
	}
}

// TestRecordCertificateCancelledWhileQueued checks that a caller whose
// context ends while it waits for the write lock gets an error and that its
// certificate is not recorded later by another caller's commit.
func TestRecordCertificateCancelledWhileQueued(t *testing.T) {
	d := openTest(t)
	createCluster(t, d, "c")
	d.writer <- struct{}{}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := d.RecordCertificate(ctx, storetest.Cert("c", 1, 1))
	<-d.writer
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want one wrapping context.DeadlineExceeded", err)
	}
	if err := d.RecordCertificate(context.Background(), storetest.Cert("c", 1, 2)); err != nil {
		t.Fatal(err)
	}
	got, err := d.Certificates(context.Background(), storetest.All("c"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Serial != storetest.Cert("c", 1, 2).Serial {
		t.Errorf("registry holds %v, want only the second certificate", got)
	}
}

// TestConcurrentReadsReuseConnections checks that concurrent reads, as
// many as the pool holds, do not close and reopen connections between
// rounds (each reopen applies the pragmas and prepares statements again).
func TestConcurrentReadsReuseConnections(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	createCluster(t, d, "c")
	round := func() {
		var wg sync.WaitGroup
		for range maxConns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Hold a connection each, all at once.
				tx, err := d.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
				if err != nil {
					t.Error(err)
					return
				}
				defer tx.Rollback()
				var n int
				if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM clusters").Scan(&n); err != nil {
					t.Error(err)
				}
				time.Sleep(20 * time.Millisecond)
			}()
		}
		wg.Wait()
	}
	round()
	before := d.db.Stats().MaxIdleClosed
	round()
	round()
	if closed := d.db.Stats().MaxIdleClosed - before; closed != 0 {
		t.Errorf("%d connections closed for lack of idle slots between rounds, want 0", closed)
	}
}

// TestStatementOnlyErrors checks which insert failures leave the group
// commit's transaction usable for the rest of the batch: constraint
// violations (a duplicate serial, a missing generation), which SQLite undoes
// for the failing statement alone, and nothing else.
func TestStatementOnlyErrors(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	createCluster(t, d, "c")
	if err := d.RecordCertificate(ctx, storetest.Cert("c", 1, 1)); err != nil {
		t.Fatal(err)
	}
	insert := func(c store.IssuedCertificate) error {
		return d.write(ctx, func(tx *sql.Tx) error {
			stmt := tx.StmtContext(ctx, d.stmts.insertCertificate)
			defer stmt.Close()
			return insertCertificate(ctx, d, tx, stmt, c)
		})
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"duplicate serial", insert(storetest.Cert("c", 1, 1)), true},
		{"missing generation", insert(storetest.Cert("c", 7, 2)), true},
		{"closed database", sql.ErrConnDone, false},
		{"busy", d.wrap(errors.New("database is locked"), "insert"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil {
				t.Fatal("no error to classify")
			}
			if got := statementOnly(tc.err); got != tc.want {
				t.Errorf("statementOnly(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// TestGroupCommitRefusedUserSparesTheBatch checks that a revoked user's
// certificate, refused inside a group commit, fails alone: the other
// certificates of the same transaction are recorded.
func TestGroupCommitRefusedUserSparesTheBatch(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	createCluster(t, d, "c")
	revoked := storetest.Cert("c", 1, 1)
	revoked.User = "mallory"
	if _, err := d.RevokeUser(ctx, store.Revocation{Cluster: "c", User: "mallory", Reason: "affiliationChanged", By: "admin", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	others := []store.IssuedCertificate{storetest.Cert("c", 1, 2), storetest.Cert("c", 1, 3)}
	batch := []*certWrite{
		{c: others[0], done: make(chan error, 1)},
		{c: revoked, done: make(chan error, 1)},
		{c: others[1], done: make(chan error, 1)},
	}
	d.commitCertificates(ctx, batch)
	for i, w := range batch {
		err := <-w.done
		if wantRefused := i == 1; wantRefused != errors.Is(err, api.ErrUserRevoked) || (!wantRefused && err != nil) {
			t.Errorf("write %d (user %s): %v", i, w.c.User, err)
		}
	}
	for _, c := range others {
		got, err := d.Certificates(ctx, store.CertificateQuery{Cluster: "c", Serial: c.Serial, Limit: 1})
		if err != nil || len(got) != 1 {
			t.Errorf("certificate %s of the same batch: %v, %d found", c.Serial, err, len(got))
		}
	}
}
