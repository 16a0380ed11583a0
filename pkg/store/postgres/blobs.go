package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// PutBlob stores blob under ref, for software key custody. An existing ref
// fails with an error wrapping api.ErrConflict: a ref is never overwritten.
func (d *DB) PutBlob(ctx context.Context, ref string, blob []byte) error {
	if ref == "" {
		return errors.New("put blob: empty ref")
	}
	err := d.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO blobs (ref, blob, created_at) VALUES ($1, $2, now())", ref, nonNil(blob)); err != nil {
			return d.wrap(err, "insert")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put blob %q: %w", ref, err)
	}
	return nil
}

// GetBlob returns the blob stored under ref (api.ErrNotFound when absent).
func (d *DB) GetBlob(ctx context.Context, ref string) ([]byte, error) {
	var blob []byte
	if err := d.queryRow(ctx, "SELECT blob FROM blobs WHERE ref = $1", []any{ref}, &blob); err != nil {
		return nil, d.wrap(err, "get blob %q", ref)
	}
	return nonNil(blob), nil
}

// DeleteBlob deletes the blob stored under ref. Deleting a missing ref is
// not an error.
func (d *DB) DeleteBlob(ctx context.Context, ref string) error {
	err := d.attempt(ctx, func() error {
		_, err := d.pool.Exec(ctx, "DELETE FROM blobs WHERE ref = $1", ref)
		return err
	})
	if err != nil {
		return d.wrap(err, "delete blob %q", ref)
	}
	return nil
}
