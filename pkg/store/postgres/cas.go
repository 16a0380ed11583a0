package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// A pointer is a row's column naming its active generation or version:
// clusters.generation, keks.active_version.
type pointer struct {
	table, column string
	// what names it in errors: "generation", "version".
	what string
}

var (
	clusterGeneration = pointer{"clusters", "generation", "generation"}
	kekActiveVersion  = pointer{"keks", "active_version", "version"}
)

// move sets pointer p of row name from expected to next in tx, the
// compare-and-swap of a rekey or a rotation. When the row does not hold
// expected it fails wrapping api.ErrGenerationMismatch with the value it
// holds, or wrapping api.ErrNotFound when there is no such row.
func (d *DB) move(ctx context.Context, tx pgx.Tx, p pointer, name string, expected, next int) error {
	tag, err := tx.Exec(ctx, "UPDATE "+p.table+" SET "+p.column+" = $1 WHERE name = $2 AND "+p.column+" = $3",
		next, name, expected)
	if err != nil {
		return d.wrap(err, "move the active %s", p.what)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var active int
	if err := tx.QueryRow(ctx, "SELECT "+p.column+" FROM "+p.table+" WHERE name = $1", name).Scan(&active); err != nil {
		return d.wrap(err, "read the active %s", p.what)
	}
	return fmt.Errorf("active %s is %d, not %d: %w", p.what, active, expected, api.ErrGenerationMismatch)
}
