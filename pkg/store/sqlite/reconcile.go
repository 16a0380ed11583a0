package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// KeyRefs returns every custody key ref the store names: as Live, the key
// of each cluster's active CA generation and of every KEK version; as
// Retired, the keys of CA generations a rekey replaced. One statement reads
// both, so a rekey is seen either wholly or not at all.
func (d *DB) KeyRefs(ctx context.Context) (store.KeyRefs, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT g.key_ref, g.generation < c.generation
		FROM ca_generations g JOIN clusters c ON c.name = g.cluster AND g.generation <= c.generation
		UNION ALL SELECT key_ref, 0 FROM kek_versions`)
	if err != nil {
		return store.KeyRefs{}, d.wrap(err, "list key refs")
	}
	defer rows.Close()
	var refs store.KeyRefs
	for rows.Next() {
		var ref string
		var retired bool
		if err := rows.Scan(&ref, &retired); err != nil {
			return store.KeyRefs{}, d.wrap(err, "list key refs")
		}
		if retired {
			refs.Retired = append(refs.Retired, ref)
		} else {
			refs.Live = append(refs.Live, ref)
		}
	}
	if err := rows.Err(); err != nil {
		return store.KeyRefs{}, d.wrap(err, "list key refs")
	}
	return refs, nil
}

// ListBlobs returns the ref and creation time of every blob whose ref
// starts with prefix (all when empty), never their contents.
func (d *DB) ListBlobs(ctx context.Context, prefix string) ([]store.Blob, error) {
	// Not LIKE: it has wildcards ('_' occurs in refs) and ignores ASCII case.
	rows, err := d.db.QueryContext(ctx, `SELECT ref, created_at FROM blobs WHERE substr(ref, 1, length(?1)) = ?1 ORDER BY ref`, prefix)
	if err != nil {
		return nil, d.wrap(err, "list blobs")
	}
	defer rows.Close()
	var blobs []store.Blob
	for rows.Next() {
		var b store.Blob
		var created sql.NullString
		if err := rows.Scan(&b.Ref, &created); err != nil {
			return nil, d.wrap(err, "list blobs")
		}
		if b.CreatedAt, err = parseTime(created); err != nil {
			return nil, fmt.Errorf("list blobs: %w", err)
		}
		blobs = append(blobs, b)
	}
	if err := rows.Err(); err != nil {
		return nil, d.wrap(err, "list blobs")
	}
	return blobs, nil
}

// AcquireLease takes the lease name for holder until now+ttl and reports
// whether it did: it succeeds when nobody holds the lease, when it expired
// (expires_at ≤ now), or when holder already holds it (a renewal). It is a
// compare-and-swap in one write transaction, so of two instances only one
// gets it.
func (d *DB) AcquireLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	if name == "" || holder == "" || ttl <= 0 {
		return false, fmt.Errorf("acquire lease %q: name, holder and a positive ttl are required", name)
	}
	if err := checkTimes(now, now.Add(ttl)); err != nil {
		return false, fmt.Errorf("acquire lease %q: %w", name, err)
	}
	var got bool
	err := d.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
			WHERE leases.expires_at <= ?4 OR leases.holder = excluded.holder`,
			name, holder, formatTime(now.Add(ttl)), formatTime(now))
		if err != nil {
			return d.wrap(err, "take")
		}
		n, err := res.RowsAffected()
		if err != nil {
			return d.wrap(err, "take")
		}
		got = n == 1
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
	err := d.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM leases WHERE name = ? AND holder = ?", name, holder); err != nil {
			return d.wrap(err, "delete")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("release lease %q: %w", name, err)
	}
	return nil
}

// FirstSeen records now as the first-seen time of each ref in refs that has
// none, forgets the refs not in refs (keys gone from custody), and returns
// the first-seen time of every ref in refs.
func (d *DB) FirstSeen(ctx context.Context, refs []string, now time.Time) (map[string]time.Time, error) {
	if err := checkTimes(now); err != nil {
		return nil, fmt.Errorf("record first-seen times: %w", err)
	}
	seen := make(map[string]time.Time, len(refs))
	err := d.write(ctx, func(tx *sql.Tx) error {
		clear(seen)
		rows, err := tx.QueryContext(ctx, "SELECT ref, first_seen FROM custody_first_seen")
		if err != nil {
			return d.wrap(err, "read")
		}
		old := map[string]time.Time{}
		for rows.Next() {
			var ref string
			var t time.Time
			if err := rows.Scan(&ref, tm(&t)); err != nil {
				rows.Close()
				return d.wrap(err, "read")
			}
			old[ref] = t
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return d.wrap(err, "read")
		}
		for _, ref := range refs {
			if _, dup := seen[ref]; dup {
				continue
			}
			if t, ok := old[ref]; ok {
				seen[ref] = t
				delete(old, ref)
				continue
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO custody_first_seen (ref, first_seen) VALUES (?, ?)",
				ref, formatTime(now)); err != nil {
				return d.wrap(err, "insert")
			}
			seen[ref] = now.UTC()
		}
		for ref := range old {
			if _, err := tx.ExecContext(ctx, "DELETE FROM custody_first_seen WHERE ref = ?", ref); err != nil {
				return d.wrap(err, "forget")
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("record first-seen times: %w", err)
	}
	return seen, nil
}
