package software

import (
	"context"
	"fmt"
	"os"

	"github.com/clusterkeys/clusterkeys/pkg/keys"
)

// --keys software: keys sealed under a master key in the store's blobs.
func init() {
	keys.Register("software", keys.Backend{
		Rank: 1, Flags: []string{"master-key-file"}, Environ: []string{EnvMasterKey},
		Open: open,
	})
}

// open opens software custody over o.Blobs. Many instances share one
// master key: delivered in the environment (Lambda) or as a file.
func open(ctx context.Context, o keys.OpenOptions) (keys.Custody, error) {
	mk, fromEnv, err := MasterKeyFromEnv(os.LookupEnv)
	if err == nil && !fromEnv {
		mk, err = LoadOrCreateMasterKey(ctx, o.Config.MasterKeyFile, o.Blobs)
	}
	if err != nil {
		return nil, fmt.Errorf("software custody: %w", err)
	}
	c, err := New(mk, o.Blobs)
	if err != nil {
		return nil, fmt.Errorf("software custody: %w", err)
	}
	return c, nil
}
