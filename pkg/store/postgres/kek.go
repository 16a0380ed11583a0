package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// CreateKEK stores a new KEK and its first version in one transaction. An
// existing name (or a key ref or key id already used) fails with an error
// wrapping api.ErrConflict. k.ActiveVersion must equal first.Version.
func (d *DB) CreateKEK(ctx context.Context, k store.KEK, first store.KEKVersion) error {
	if err := store.CheckNewKEK(k, first); err != nil {
		return err
	}
	err := d.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO keks (name, project, active_version, created_at) VALUES ($1, $2, $3, $4)",
			k.Name, k.Project, k.ActiveVersion, ts(k.CreatedAt))
		if err != nil {
			return d.wrap(err, "insert KEK")
		}
		return d.insertKEKVersion(ctx, tx, k.Name, first)
	})
	if err != nil {
		return fmt.Errorf("create KEK %q: %w", k.Name, err)
	}
	return nil
}

func (d *DB) insertKEKVersion(ctx context.Context, tx pgx.Tx, name string, v store.KEKVersion) error {
	_, err := tx.Exec(ctx, "INSERT INTO kek_versions (name, version, key_ref, key_id, created_at) VALUES ($1, $2, $3, $4, $5)",
		name, v.Version, v.KeyRef, v.KeyID, ts(v.CreatedAt))
	if err != nil {
		return d.wrap(err, "insert KEK version %d", v.Version)
	}
	return nil
}

// KEK returns the named KEK (api.ErrNotFound when absent).
func (d *DB) KEK(ctx context.Context, name string) (store.KEK, error) {
	k := store.KEK{Name: name}
	err := d.queryRow(ctx, "SELECT project, active_version, created_at FROM keks WHERE name = $1", []any{name},
		&k.Project, &k.ActiveVersion, tm(&k.CreatedAt))
	if err != nil {
		return store.KEK{}, d.wrap(err, "read KEK %q", name)
	}
	return k, nil
}

const kekVersionColumns = "name, version, key_ref, key_id, created_at"

// kekVersionDest returns the scan destinations of kekVersionColumns in v.
func kekVersionDest(v *store.KEKVersion) []any {
	return []any{&v.Name, &v.Version, &v.KeyRef, &v.KeyID, tm(&v.CreatedAt)}
}

// KEKVersions returns every version of the named KEK, newest first. A KEK
// that does not exist has none (and no error).
func (d *DB) KEKVersions(ctx context.Context, name string) ([]store.KEKVersion, error) {
	var vs []store.KEKVersion
	err := d.query(ctx, func() { vs = nil }, func(rows pgx.Rows) error {
		var v store.KEKVersion
		if err := rows.Scan(kekVersionDest(&v)...); err != nil {
			return err
		}
		vs = append(vs, v)
		return nil
	}, "SELECT "+kekVersionColumns+" FROM kek_versions WHERE name = $1 ORDER BY version DESC", name)
	if err != nil {
		return nil, d.wrap(err, "read versions of KEK %q", name)
	}
	return vs, nil
}

// KEKVersion returns one version of the named KEK (api.ErrNotFound when
// absent).
func (d *DB) KEKVersion(ctx context.Context, name string, version int) (store.KEKVersion, error) {
	var v store.KEKVersion
	err := d.queryRow(ctx, "SELECT "+kekVersionColumns+" FROM kek_versions WHERE name = $1 AND version = $2",
		[]any{name, version}, kekVersionDest(&v)...)
	if err != nil {
		return store.KEKVersion{}, d.wrap(err, "read version %d of KEK %q", version, name)
	}
	return v, nil
}

// KEKVersionByKeyID returns the version whose KeyID is keyID
// (api.ErrNotFound when absent).
func (d *DB) KEKVersionByKeyID(ctx context.Context, keyID string) (store.KEKVersion, error) {
	var v store.KEKVersion
	err := d.queryRow(ctx, "SELECT "+kekVersionColumns+" FROM kek_versions WHERE key_id = $1",
		[]any{keyID}, kekVersionDest(&v)...)
	if err != nil {
		return store.KEKVersion{}, d.wrap(err, "read KEK version with key id %q", keyID)
	}
	return v, nil
}

// RotateKEK atomically checks that the active version of the named KEK is
// expected (else an error wrapping api.ErrGenerationMismatch; a missing KEK
// gives api.ErrNotFound), inserts next (whose Version must be expected+1)
// and makes it active, in one transaction. As for Rekey, the conditional
// UPDATE of the active version decides between concurrent rotations on
// any number of instances.
func (d *DB) RotateKEK(ctx context.Context, name string, expected int, next store.KEKVersion) error {
	if err := store.CheckKEKRotation(name, expected, next); err != nil {
		return err
	}
	err := d.write(ctx, func(tx pgx.Tx) error {
		if err := d.move(ctx, tx, kekActiveVersion, name, expected, next.Version); err != nil {
			return err
		}
		return d.insertKEKVersion(ctx, tx, name, next)
	})
	if err != nil {
		return fmt.Errorf("rotate KEK %q from version %d: %w", name, expected, err)
	}
	return nil
}
