package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// The expressions of migration 0008's indexes, as the listing and the
// marking test them: unmarkedExpiry <= now holds for the never-revoked
// rows expired at now and not marked lapsed; lapsedExpiry > now for those
// marked and still valid at now.
const (
	unmarkedExpiry = "(CASE WHEN revoked_at IS NULL AND NOT lapsed THEN coalesce(not_after, '-infinity'::timestamptz) END)"
	lapsedExpiry   = "(CASE WHEN revoked_at IS NULL AND lapsed THEN not_after END)"
)

// MarkExpired marks lapsed every never-revoked certificate of cluster
// that has expired at now and is not marked yet, in transactions of at
// most store.LapseBatch rows, and returns how many it marked. It is
// idempotent, and safe beside other instances marking the same rows (each
// skips the rows another has locked, so none waits or deadlocks) and
// beside any listing: the marks only say where a listing by status looks
// for a row (migration 0008). When it marked a tenth of the table or more
// (a registry migrated to 0008 or bulk-loaded), it vacuums and analyzes
// the table, as autovacuum would a little later. A listing by
// status calls it when it finds a backlog; it may also be run by anything
// that sweeps.
func (d *DB) MarkExpired(ctx context.Context, cluster string, now time.Time) (int, error) {
	n, _, err := d.markExpired(ctx, cluster, now, time.Time{})
	return n, err
}

// markExpired is MarkExpired, stopping after the batch that ends past
// deadline (unless zero); done reports that no backlog is left.
func (d *DB) markExpired(ctx context.Context, cluster string, now, deadline time.Time) (total int, done bool, err error) {
	if !store.ValidInstant(now) {
		return 0, false, fmt.Errorf("mark the expired certificates of cluster %q: invalid instant %v", cluster, now)
	}
	for !done {
		var n int64
		err := d.write(ctx, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, `UPDATE issued_certificates SET lapsed = true
				WHERE id IN (SELECT id FROM issued_certificates WHERE cluster = $1 AND `+unmarkedExpiry+` <= $2
					LIMIT $3 FOR UPDATE SKIP LOCKED)`, pgx.QueryExecModeExec, cluster, ts(now), store.LapseBatch)
			if err != nil {
				return d.wrap(err, "mark the expired certificates of cluster %q", cluster)
			}
			n = tag.RowsAffected()
			return nil
		})
		if err != nil {
			return total, false, err
		}
		total += int(n)
		done = n < store.LapseBatch
		if !done && !deadline.IsZero() && time.Now().After(deadline) {
			break
		}
	}
	if total == 0 {
		return 0, done, nil
	}
	// As autovacuum would once a tenth of the table changed, but before
	// the listing that follows: the planner sees the marks, and the index
	// of the unmarked expired loses the entries of the row versions the
	// marking replaced (until then a listing skips them, a page of the
	// index per hundred).
	var tuples float64
	if err := d.queryRow(ctx, "SELECT reltuples FROM pg_class WHERE oid = 'issued_certificates'::regclass", nil, &tuples); err != nil {
		return total, done, d.wrap(err, "read the size of the registry after marking")
	}
	if done && float64(total)*10 >= tuples {
		if _, err := d.pool.Exec(ctx, "VACUUM (ANALYZE) issued_certificates"); err != nil {
			return total, done, d.wrap(err, "vacuum the registry after marking")
		}
	}
	return total, done, nil
}

// markBacklog is store.MarkBacklog on this store. The look and the
// marking are planned with their arguments each time
// (pgx.QueryExecModeExec), as the listings by status are: a generic plan
// of "the first rows whose expression <= $2" may scan the table.
func (d *DB) markBacklog(ctx context.Context, cluster string, now time.Time) (large bool) {
	return store.MarkBacklog(ctx, &d.probes, cluster, func(ctx context.Context) (int, error) {
		var n int
		err := d.queryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM issued_certificates
			WHERE cluster = $1 AND `+unmarkedExpiry+` <= $2 LIMIT $3) backlog`,
			[]any{pgx.QueryExecModeExec, cluster, ts(now), store.LapseBacklog}, &n)
		return n, err
	}, func(ctx context.Context, deadline time.Time) (bool, error) {
		_, done, err := d.markExpired(ctx, cluster, now, deadline)
		return done, err
	})
}
