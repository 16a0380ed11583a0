package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// unmarkedExpiredSQL selects, with ?1 the cluster and ?2 the instant, the
// rowids of never-revoked certificates expired at the instant and not
// marked lapsed, at most ?3 of each kind, through
// issued_certificates_live_expiry (the NULLs apart: SQLite reads an OR of
// the two by the index's first columns only).
const unmarkedExpiredSQL = `
	SELECT rowid FROM (SELECT rowid FROM issued_certificates INDEXED BY ` + liveExpiry + `
		WHERE cluster = ?1 AND revoked_at IS NULL AND lapsed = 0 AND not_after <= ?2 LIMIT ?3)
	UNION ALL
	SELECT rowid FROM (SELECT rowid FROM issued_certificates INDEXED BY ` + liveExpiry + `
		WHERE cluster = ?1 AND revoked_at IS NULL AND lapsed = 0 AND not_after IS NULL LIMIT ?3)`

// MarkExpired marks lapsed every never-revoked certificate of cluster
// that has expired at now and is not marked yet, in transactions of at
// most store.LapseBatch rows, and returns how many it marked. It is
// idempotent, and safe beside other instances marking the same rows and
// beside any listing: the marks only say where a listing by status looks
// for a row (migration 0008). A listing by status calls it when it finds a
// backlog; it may also be run by anything that sweeps.
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
	for {
		var n int64
		err := d.write(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, `UPDATE issued_certificates SET lapsed = 1
				WHERE rowid IN (`+unmarkedExpiredSQL+`)`, cluster, formatTime(now), store.LapseBatch)
			if err != nil {
				return d.wrap(err, "mark the expired certificates of cluster %q", cluster)
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, false, err
		}
		total += int(n)
		if n < store.LapseBatch {
			return total, true, nil
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return total, false, nil
		}
	}
}

// markBacklog is store.MarkBacklog on this store.
func (d *DB) markBacklog(ctx context.Context, cluster string, now time.Time) (large bool) {
	return store.MarkBacklog(ctx, &d.probes, cluster, func(ctx context.Context) (int, error) {
		var n int
		err := d.db.QueryRowContext(ctx, `SELECT count(*) FROM (`+unmarkedExpiredSQL+`)`,
			cluster, formatTime(now), store.LapseBacklog).Scan(&n)
		return n, err
	}, func(ctx context.Context, deadline time.Time) (bool, error) {
		_, done, err := d.markExpired(ctx, cluster, now, deadline)
		return done, err
	})
}
