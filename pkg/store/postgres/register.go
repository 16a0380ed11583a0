package postgres

import (
	"context"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// The store a PostgreSQL URI given as --store opens.
func init() {
	store.Register("postgres", store.Backend{
		Rank: 2, Prefixes: []string{"postgres://", "postgresql://"}, Usage: []string{"postgres://…", "postgresql://…"},
		Open: func(ctx context.Context, dsn string) (store.Handle, error) { return Open(ctx, dsn) },
	})
}
