package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// SetPolicy replaces the signing policy of a cluster (migration 0006's
// policy column); the zero policy clears it. A missing cluster gives
// api.ErrNotFound. A sign reads the policy with the cluster (ActiveCA) or
// remembers it, and then records with RequirePolicy: every instance on the
// store applies a new policy at its next sign.
func (d *DB) SetPolicy(ctx context.Context, cluster string, p store.ClusterPolicy) error {
	text, err := store.MarshalPolicy(p)
	if err != nil {
		return fmt.Errorf("set the policy of cluster %q: %w", cluster, err)
	}
	err = d.write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "UPDATE clusters SET policy = $1 WHERE name = $2", text, cluster)
		if err != nil {
			return d.wrap(err, "update the policy")
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("no cluster %q: %w", cluster, api.ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set the policy of cluster %q: %w", cluster, err)
	}
	return nil
}

// pol returns a scanner that stores a stored policy into dst.
func pol(dst *store.ClusterPolicy) store.PolicyScanner { return store.PolicyScanner{Dst: dst} }
