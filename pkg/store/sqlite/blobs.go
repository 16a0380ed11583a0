package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// PutBlob stores blob under ref, for software key custody. An existing ref
// fails with an error wrapping api.ErrConflict: a ref is never overwritten.
func (d *DB) PutBlob(ctx context.Context, ref string, blob []byte) error {
	if ref == "" {
		return errors.New("put blob: empty ref")
	}
	err := d.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO blobs (ref, blob, created_at) VALUES (?, ?, ?)",
			ref, nonNil(blob), formatTime(time.Now()))
		if err != nil {
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
	if err := d.db.QueryRowContext(ctx, "SELECT blob FROM blobs WHERE ref = ?", ref).Scan(&blob); err != nil {
		return nil, d.wrap(err, "get blob %q", ref)
	}
	return blob, nil
}

// DeleteBlob deletes the blob stored under ref. Deleting a missing ref is
// not an error.
func (d *DB) DeleteBlob(ctx context.Context, ref string) error {
	err := d.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM blobs WHERE ref = ?", ref); err != nil {
			return d.wrap(err, "delete")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete blob %q: %w", ref, err)
	}
	return nil
}
