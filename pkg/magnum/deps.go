package magnum

import (
	"context"

	"github.com/clusterkeys/clusterkeys/pkg/ca"
)

// Authority is what the Magnum API asks of the CA; *ca.Authority
// implements it.
type Authority interface {
	// Sign signs a CSR with the active CA of cluster.
	Sign(ctx context.Context, cluster string, req ca.SignRequest) (ca.SignResult, error)
	// CA shows the CA of cluster.
	CA(ctx context.Context, cluster string) (ca.Resource, error)
	// Rekey rotates the CA of cluster.
	Rekey(ctx context.Context, cluster string, req ca.RekeyRequest) (ca.Resource, error)
}

var _ Authority = (*ca.Authority)(nil)
