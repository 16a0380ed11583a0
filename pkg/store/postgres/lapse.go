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
	if now.IsZero() || checkTimes(now) != nil {
		return 0, fmt.Errorf("mark the expired certificates of cluster %q: invalid instant %v", cluster, now)
	}
	total := 0
	for {
		var n int64
		err := d.write(ctx, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, `UPDATE issued_certificates SET lapsed = true
				WHERE id IN (SELECT id FROM issued_certificates WHERE cluster = $1 AND `+unmarkedExpiry+` <= $2
					LIMIT $3 FOR UPDATE SKIP LOCKED)`, cluster, ts(now), store.LapseBatch)
			if err != nil {
				return d.wrap(err, "mark the expired certificates of cluster %q", cluster)
			}
			n = tag.RowsAffected()
			return nil
		})
		if err != nil {
			return total, err
		}
		total += int(n)
		if n < store.LapseBatch {
			break
		}
	}
	if total == 0 {
		return 0, nil
	}
	// As autovacuum would once a tenth of the table changed, but before
	// the listing that follows: the planner sees the marks, and the index
	// of the unmarked expired loses the entries of the row versions the
	// marking replaced (until then a listing skips them, a page of the
	// index per hundred).
	var tuples float64
	if err := d.queryRow(ctx, "SELECT reltuples FROM pg_class WHERE oid = 'issued_certificates'::regclass", nil, &tuples); err != nil {
		return total, d.wrap(err, "read the size of the registry after marking")
	}
	if float64(total)*10 >= tuples {
		if _, err := d.pool.Exec(ctx, "VACUUM (ANALYZE) issued_certificates"); err != nil {
			return total, d.wrap(err, "vacuum the registry after marking")
		}
	}
	return total, nil
}

// markBacklog marks the expired certificates of cluster at now when a
// listing would otherwise sort at least store.LapseBacklog of them; it
// looks at most every store.LapseProbeEvery per cluster. A
// failure only leaves the listing slower, never wrong, so it is not the
// listing's error: the listing that follows reports a store that fails.
func (d *DB) markBacklog(ctx context.Context, cluster string, now time.Time) {
	if !d.probes.Due(cluster) {
		return
	}
	var n int
	if err := d.queryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM issued_certificates
		WHERE cluster = $1 AND `+unmarkedExpiry+` <= $2 LIMIT $3) backlog`,
		[]any{cluster, ts(now), store.LapseBacklog}, &n); err != nil || n < store.LapseBacklog {
		return
	}
	_, _ = d.MarkExpired(ctx, cluster, now)
}
