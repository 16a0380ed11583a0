package sqlite

import (
	"context"
	"strings"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// The store --store sqlite:PATH opens.
func init() {
	store.Register("sqlite", store.Backend{
		Rank: 1, Prefixes: []string{"sqlite:"}, Usage: []string{"sqlite:PATH"}, Path: true,
		Open: func(ctx context.Context, value string) (store.Handle, error) {
			return Open(ctx, strings.TrimPrefix(value, "sqlite:"))
		},
	})
}
