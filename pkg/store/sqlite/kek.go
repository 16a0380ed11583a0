package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// CreateKEK stores a new KEK and its first version in one transaction. An
// existing name (or a key ref or key id already used) fails with an error
// wrapping api.ErrConflict. k.ActiveVersion must equal first.Version.
func (d *DB) CreateKEK(ctx context.Context, k store.KEK, first store.KEKVersion) error {
	if err := store.CheckNewKEK(k, first); err != nil {
		return err
	}
	err := d.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO keks (name, project, active_version, created_at) VALUES (?, ?, ?, ?)",
			k.Name, k.Project, k.ActiveVersion, formatTime(k.CreatedAt))
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

func (d *DB) insertKEKVersion(ctx context.Context, tx *sql.Tx, name string, v store.KEKVersion) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO kek_versions (name, version, key_ref, key_id, created_at) VALUES (?, ?, ?, ?, ?)",
		name, v.Version, v.KeyRef, v.KeyID, formatTime(v.CreatedAt))
	if err != nil {
		return d.wrap(err, "insert KEK version %d", v.Version)
	}
	return nil
}

// KEK returns the named KEK (api.ErrNotFound when absent).
func (d *DB) KEK(ctx context.Context, name string) (store.KEK, error) {
	k := store.KEK{Name: name}
	err := d.db.QueryRowContext(ctx, "SELECT project, active_version, created_at FROM keks WHERE name = ?", name).
		Scan(&k.Project, &k.ActiveVersion, tm(&k.CreatedAt))
	if err != nil {
		return store.KEK{}, d.wrap(err, "read KEK %q", name)
	}
	return k, nil
}

const kekVersionColumns = "name, version, key_ref, key_id, created_at"

func scanKEKVersion(row interface{ Scan(...any) error }) (store.KEKVersion, error) {
	var v store.KEKVersion
	err := row.Scan(&v.Name, &v.Version, &v.KeyRef, &v.KeyID, tm(&v.CreatedAt))
	return v, err
}

// KEKVersions returns every version of the named KEK, newest first. A KEK
// that does not exist has none (and no error).
func (d *DB) KEKVersions(ctx context.Context, name string) ([]store.KEKVersion, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT "+kekVersionColumns+" FROM kek_versions WHERE name = ? ORDER BY version DESC", name)
	if err != nil {
		return nil, d.wrap(err, "read versions of KEK %q", name)
	}
	defer rows.Close()
	var vs []store.KEKVersion
	for rows.Next() {
		v, err := scanKEKVersion(rows)
		if err != nil {
			return nil, d.wrap(err, "read versions of KEK %q", name)
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		return nil, d.wrap(err, "read versions of KEK %q", name)
	}
	return vs, nil
}

// KEKVersion returns one version of the named KEK (api.ErrNotFound when
// absent).
func (d *DB) KEKVersion(ctx context.Context, name string, version int) (store.KEKVersion, error) {
	v, err := scanKEKVersion(d.db.QueryRowContext(ctx,
		"SELECT "+kekVersionColumns+" FROM kek_versions WHERE name = ? AND version = ?", name, version))
	if err != nil {
		return store.KEKVersion{}, d.wrap(err, "read version %d of KEK %q", version, name)
	}
	return v, nil
}

// KEKVersionByKeyID returns the version whose KeyID is keyID
// (api.ErrNotFound when absent).
func (d *DB) KEKVersionByKeyID(ctx context.Context, keyID string) (store.KEKVersion, error) {
	v, err := scanKEKVersion(d.db.QueryRowContext(ctx,
		"SELECT "+kekVersionColumns+" FROM kek_versions WHERE key_id = ?", keyID))
	if err != nil {
		return store.KEKVersion{}, d.wrap(err, "read KEK version with key id %q", keyID)
	}
	return v, nil
}

// RotateKEK atomically checks that the active version of the named KEK is
// expected (else an error wrapping api.ErrGenerationMismatch; a missing KEK
// gives api.ErrNotFound), inserts next (whose Version must be expected+1)
// and makes it active, in one transaction.
func (d *DB) RotateKEK(ctx context.Context, name string, expected int, next store.KEKVersion) error {
	if err := store.CheckKEKRotation(name, expected, next); err != nil {
		return err
	}
	err := d.write(ctx, func(tx *sql.Tx) error {
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
