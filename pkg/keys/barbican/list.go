package barbican

import (
	"context"
	"fmt"
	"strings"

	"github.com/gophercloud/gophercloud/v2/openstack/keymanager/v1/secrets"

	"github.com/clusterkeys/clusterkeys/pkg/keys"
)

// listPageSize is how many secrets one list request asks for.
const listPageSize = 100

// ListKeys returns the name and creation time of every secret of the
// project whose name is a clusterkeys key ref ("ca/…" or "kek/…"), for the
// reconciler (pkg/reconcile). Other secrets of the project are left out.
func (c *Custody) ListKeys(ctx context.Context) ([]keys.Listed, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*c.timeout)
	defer cancel()
	pages, err := secrets.List(c.sc, secrets.ListOpts{Limit: listPageSize}).AllPages(ctx)
	if err != nil {
		return nil, classify("list secrets", err)
	}
	all, err := secrets.ExtractSecrets(pages)
	if err != nil {
		return nil, fmt.Errorf("barbican custody: list secrets: %w", err)
	}
	var out []keys.Listed
	for _, s := range all {
		if strings.HasPrefix(s.Name, "ca/") || strings.HasPrefix(s.Name, "kek/") {
			out = append(out, keys.Listed{Ref: s.Name, Created: s.Created.UTC()})
		}
	}
	return out, nil
}
