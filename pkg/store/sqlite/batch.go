package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// maxCertBatch bounds the certificates one group commit records.
const maxCertBatch = 128

// certQueue holds the RecordCertificate calls waiting for a commit.
//
// Group commit: with synchronous(FULL) every commit costs a write and an
// fsync of the WAL, and concurrent signs used to queue for the write lock
// one commit each. Now a caller queues its certificate and then takes the
// write lock; whoever holds it records everything queued in one
// transaction (a conflict, which SQLite undoes for its own statement,
// fails only its caller; any other error fails the batch), commits once,
// and hands every caller its own outcome. A caller returns only after the
// transaction holding its certificate has committed (or failed), so the
// registry still records every certificate before it is handed out.
type certQueue struct {
	mu      sync.Mutex
	pending []*certWrite
	// transactions counts the group commits run (for tests).
	transactions atomic.Int64
}

// certWrite is one queued certificate and where its outcome goes.
type certWrite struct {
	c    store.IssuedCertificate
	done chan error // buffered: the committer never blocks on it
}

func (q *certQueue) push(w *certWrite) {
	q.mu.Lock()
	q.pending = append(q.pending, w)
	q.mu.Unlock()
}

// take removes and returns up to maxCertBatch queued writes, oldest first.
func (q *certQueue) take() []*certWrite {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.pending), maxCertBatch)
	batch := slices.Clone(q.pending[:n])
	q.pending = slices.Delete(q.pending, 0, n)
	return batch
}

// remove takes w out of the queue and reports whether it was still there
// (false: a committer has it and will answer on w.done).
func (q *certQueue) remove(w *certWrite) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := slices.Index(q.pending, w); i >= 0 {
		q.pending = slices.Delete(q.pending, i, i+1)
		return true
	}
	return false
}

// recordQueued records c through the group commit and returns its outcome.
func (d *DB) recordQueued(ctx context.Context, c store.IssuedCertificate) error {
	w := &certWrite{c: c, done: make(chan error, 1)}
	d.certs.push(w)
	select {
	case err := <-w.done:
		return err
	case d.writer <- struct{}{}:
		d.commitQueued(ctx, w)
		return <-w.done
	case <-ctx.Done():
		if d.certs.remove(w) {
			return d.wrap(ctx.Err(), "wait for the write lock")
		}
		return <-w.done
	}
}

// commitQueued runs with the write lock taken and releases it. Whoever
// held the lock before answered for everything it took: commit what is
// queued until w is answered (it is still queued, or already answered).
func (d *DB) commitQueued(ctx context.Context, w *certWrite) {
	defer func() { <-d.writer }()
	for len(w.done) == 0 {
		batch := d.certs.take()
		if len(batch) == 0 {
			return
		}
		d.commitCertificates(ctx, batch)
	}
}

// commitCertificates records batch in one transaction, with the write lock
// held, and answers each write. The transaction does not end with the
// context of the caller that happens to run it (others wait on it too),
// and runs under a context that is never done: with one, database/sql and
// the driver start a goroutine per transaction and per statement to watch
// it, a cost every sign paid. What bounds the transaction is the busy
// timeout (BEGIN IMMEDIATE waiting for another process's lock); an
// interrupt could not have cut a hung write or fsync short anyway.
func (d *DB) commitCertificates(ctx context.Context, batch []*certWrite) {
	ctx = context.WithoutCancel(ctx)
	d.certs.transactions.Add(1)
	errs := make([]error, len(batch))
	err := d.writeLocked(ctx, func(tx *sql.Tx) error {
		stmt := tx.StmtContext(ctx, d.stmts.insertCertificate)
		defer stmt.Close()
		for i, w := range batch {
			errs[i] = insertCertificate(ctx, d, tx, stmt, w.c)
			if errs[i] != nil && !statementOnly(errs[i]) {
				// Anything but a constraint violation, a refused user or
				// a retired or missing generation (whose insert wrote
				// nothing) may have rolled the transaction back (I/O, a
				// full disk): fail the batch.
				return errs[i]
			}
		}
		return nil
	})
	for i, w := range batch {
		switch {
		case errs[i] != nil:
			w.done <- errs[i]
		case err != nil:
			w.done <- err
		default:
			w.done <- nil
		}
	}
}

// statementOnly reports whether err undid only its own statement: a
// constraint violation, which SQLite undoes for the failing statement alone
// (its default ABORT conflict resolution), or an insert its own conditions
// refused (notInserted), which wrote nothing. The transaction and the other
// certificates of the batch stay as they were, so no savepoint is needed
// around each insert.
func statementOnly(err error) bool {
	var se *msqlite.Error
	var ni notInserted
	return errors.As(err, &ni) || (errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT)
}

// notInserted is an insert that its own conditions refused (a revoked
// user, a retired or missing generation): nothing was written.
type notInserted struct{ error }

func (e notInserted) Unwrap() error { return e.error }

// insertCertificate inserts one registry entry with the prepared statement
// of tx.
func insertCertificate(ctx context.Context, d *DB, tx *sql.Tx, stmt *sql.Stmt, c store.IssuedCertificate) error {
	policy, err := store.RequiredPolicyText(c)
	if err != nil {
		return notInserted{err}
	}
	res, err := stmt.ExecContext(ctx,
		c.Cluster, c.Serial, c.Generation, c.Subject, c.Profile, c.User, c.Project,
		formatTime(c.NotBefore), formatTime(c.NotAfter), formatTime(c.IssuedAt), formatTime(c.RevokedAt), c.Privileged,
		c.CertificateDER, c.RequireActive, c.RequirePolicy != nil, policy)
	if err != nil {
		return d.wrap(err, "insert")
	}
	if n, err := res.RowsAffected(); err != nil {
		return d.wrap(err, "insert")
	} else if n == 1 {
		return nil
	}
	if c.RequireActive || c.RequirePolicy != nil {
		// Nothing inserted: say why, from the same transaction.
		var active int
		var exists, samePolicy bool
		err := tx.QueryRowContext(ctx, `SELECT generation,
			EXISTS (SELECT 1 FROM ca_generations WHERE cluster = ?1 AND generation = ?2),
			COALESCE(policy, '') = COALESCE(?3, '')
			FROM clusters WHERE name = ?1`, c.Cluster, c.Generation, policy).Scan(&active, &exists, &samePolicy)
		if errors.Is(err, sql.ErrNoRows) {
			// The insert's own conditions refused it (no cluster, so no
			// active generation): it wrote nothing, like a missing
			// generation, and must not fail the rest of the batch.
			return notInserted{fmt.Errorf("no cluster %q: %w", c.Cluster, api.ErrNotFound)}
		}
		if err != nil {
			return d.wrap(err, "read cluster %q", c.Cluster)
		}
		if !exists {
			return notInserted{fmt.Errorf("no CA generation %d: %w", c.Generation, api.ErrNotFound)}
		}
		if c.RequireActive && active != c.Generation {
			return notInserted{fmt.Errorf("generation %d is no longer active on cluster %q (now %d): %w",
				c.Generation, c.Cluster, active, api.ErrGenerationMismatch)}
		}
		if c.RequirePolicy != nil && !samePolicy {
			return notInserted{fmt.Errorf("cluster %q: %w", c.Cluster, store.ErrPolicyChanged)}
		}
	}
	return notInserted{fmt.Errorf("user %q is revoked on cluster %q: %w", c.User, c.Cluster, api.ErrUserRevoked)}
}

// hotStatements are the statements a sign runs (the record; the reads
// when it remembers no reading of its cluster), prepared once per
// connection instead of parsed on every call.
type hotStatements struct {
	insertCertificate *sql.Stmt
	activeCA          *sql.Stmt
	cluster           *sql.Stmt
}

func (d *DB) prepare(ctx context.Context) error {
	for _, s := range []struct {
		dst  **sql.Stmt
		text string
	}{
		{&d.stmts.insertCertificate, insertCertificateSQL},
		{&d.stmts.activeCA, activeCASQL},
		{&d.stmts.cluster, clusterSQL},
	} {
		st, err := d.db.PrepareContext(ctx, s.text)
		if err != nil {
			return d.wrap(err, "prepare statement")
		}
		*s.dst = st
	}
	return nil
}

func (h *hotStatements) close() {
	for _, s := range []*sql.Stmt{h.insertCertificate, h.activeCA, h.cluster} {
		if s != nil {
			_ = s.Close()
		}
	}
}
