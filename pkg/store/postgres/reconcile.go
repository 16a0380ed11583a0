package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// KeyRefs returns every custody key ref the store names: as Live, the key
// of each cluster's active CA generation and of every KEK version; as
// Retired, the keys of CA generations a rekey replaced. One statement reads
// both (one snapshot), so a rekey is seen either wholly or not at all.
func (d *DB) KeyRefs(ctx context.Context) (store.KeyRefs, error) {
	var refs store.KeyRefs
	err := d.query(ctx, func() { refs = store.KeyRefs{} }, func(rows pgx.Rows) error {
		var ref string
		var retired bool
		if err := rows.Scan(&ref, &retired); err != nil {
			return err
		}
		if retired {
			refs.Retired = append(refs.Retired, ref)
		} else {
			refs.Live = append(refs.Live, ref)
		}
		return nil
	}, `SELECT g.key_ref, g.generation < c.generation
		FROM ca_generations g JOIN clusters c ON c.name = g.cluster AND g.generation <= c.generation
		UNION ALL SELECT key_ref, false FROM kek_versions`)
	if err != nil {
		return store.KeyRefs{}, d.wrap(err, "list key refs")
	}
	return refs, nil
}

// ListBlobs returns the ref and creation time of every blob whose ref
// starts with prefix (all when empty), never their contents, in byte order
// of ref (as SQLite orders them, whatever the database's collation).
func (d *DB) ListBlobs(ctx context.Context, prefix string) ([]store.Blob, error) {
	var blobs []store.Blob
	err := d.query(ctx, func() { blobs = nil }, func(rows pgx.Rows) error {
		var b store.Blob
		if err := rows.Scan(&b.Ref, tm(&b.CreatedAt)); err != nil {
			return err
		}
		blobs = append(blobs, b)
		return nil
	}, `SELECT ref, created_at FROM blobs WHERE starts_with(ref, $1) ORDER BY ref COLLATE "C"`, prefix)
	if err != nil {
		return nil, d.wrap(err, "list blobs")
	}
	return blobs, nil
}

// AcquireLease takes the lease name for holder until now+ttl and reports
// whether it did: it succeeds when nobody holds the lease, when it expired
// (expires_at ≤ now), or when holder already holds it (a renewal). It is
// one conditional upsert, so of two instances only one gets it. Times are
// kept to the microsecond: now is truncated to it before it is written or
// compared, and nothing is compared for equality with a time written
// earlier.
func (d *DB) AcquireLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	if name == "" || holder == "" || ttl <= 0 {
		return false, fmt.Errorf("acquire lease %q: name, holder and a positive ttl are required", name)
	}
	now = now.Truncate(time.Microsecond)
	if err := checkTimes(now, now.Add(ttl)); err != nil {
		return false, fmt.Errorf("acquire lease %q: %w", name, err)
	}
	var got bool
	err := d.write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
			WHERE leases.expires_at <= $4 OR leases.holder = excluded.holder`,
			name, holder, ts(now.Add(ttl)), ts(now))
		if err != nil {
			return d.wrap(err, "take")
		}
		got = tag.RowsAffected() == 1
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("acquire lease %q: %w", name, err)
	}
	return got, nil
}

// ReleaseLease gives up the lease name if holder holds it, so that another
// instance need not wait for it to expire.
func (d *DB) ReleaseLease(ctx context.Context, name, holder string) error {
	err := d.attempt(ctx, func() error {
		_, err := d.pool.Exec(ctx, "DELETE FROM leases WHERE name = $1 AND holder = $2", name, holder)
		return err
	})
	if err != nil {
		return d.wrap(err, "release lease %q", name)
	}
	return nil
}

// FirstSeen records now as the first-seen time of each ref in refs that has
// none, forgets the refs not in refs (keys gone from custody), and returns
// the first-seen time of every ref in refs, as read back from the table
// (to the microsecond). Concurrent callers do not conflict: a ref another
// caller inserted first keeps that caller's time.
func (d *DB) FirstSeen(ctx context.Context, refs []string, now time.Time) (map[string]time.Time, error) {
	now = now.Truncate(time.Microsecond)
	if err := checkTimes(now); err != nil {
		return nil, fmt.Errorf("record first-seen times: %w", err)
	}
	refs = slices.Compact(slices.Sorted(slices.Values(refs)))
	if refs == nil {
		refs = []string{}
	}
	seen := make(map[string]time.Time, len(refs))
	err := d.write(ctx, func(tx pgx.Tx) error {
		clear(seen)
		if _, err := tx.Exec(ctx, "DELETE FROM custody_first_seen WHERE NOT (ref = ANY($1))", refs); err != nil {
			return d.wrap(err, "forget")
		}
		if _, err := tx.Exec(ctx, `INSERT INTO custody_first_seen (ref, first_seen)
			SELECT unnest($1::text[]), $2 ON CONFLICT (ref) DO NOTHING`, refs, ts(now)); err != nil {
			return d.wrap(err, "insert")
		}
		rows, err := tx.Query(ctx, "SELECT ref, first_seen FROM custody_first_seen WHERE ref = ANY($1)", refs)
		if err != nil {
			return d.wrap(err, "read")
		}
		defer rows.Close()
		for rows.Next() {
			var ref string
			var t time.Time
			if err := rows.Scan(&ref, tm(&t)); err != nil {
				return d.wrap(err, "read")
			}
			seen[ref] = t
		}
		if err := rows.Err(); err != nil {
			return d.wrap(err, "read")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("record first-seen times: %w", err)
	}
	return seen, nil
}
