package barbican

import (
	"context"
	"fmt"

	"github.com/gophercloud/gophercloud/v2/openstack"

	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/openstackauth"
)

// --keys barbican: keys as Barbican secrets.
func init() {
	keys.Register("barbican", keys.Backend{
		Rank: 3, Flags: []string{"barbican-endpoint", "barbican-project", "os-cloud"},
		NoSignerCache: true,
		Open:          open,
	})
}

// open opens the Barbican o.Config names. Without --barbican-project it
// authenticates with Keystone: the service user's own token, Barbican from
// the catalog unless --barbican-endpoint overrides it.
func open(ctx context.Context, o keys.OpenOptions) (keys.Custody, error) {
	cfg := o.Config
	bc := Config{Endpoint: cfg.BarbicanEndpoint, Project: cfg.BarbicanProject, Logger: o.Logger}
	if bc.Project == "" {
		pc, eo, err := openstackauth.Provider(ctx, cfg.OSCloud)
		if err != nil {
			return nil, fmt.Errorf("barbican custody: %w", err)
		}
		bc.Client = pc
		if bc.Endpoint == "" {
			sc, err := openstack.NewKeyManagerV1(pc, eo)
			if err != nil {
				return nil, fmt.Errorf("barbican custody: no key-manager in the catalog: %w", err)
			}
			bc.Endpoint = sc.Endpoint
		}
	}
	c, err := Open(bc, o.Blobs)
	if err != nil {
		return nil, err
	}
	return c, nil
}
