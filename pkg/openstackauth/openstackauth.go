// Package openstackauth logs clusterkeys in to an OpenStack cloud as its
// own service user, from a clouds.yaml entry or OS_* variables, for the
// backends that talk to Keystone and Barbican.
package openstackauth

import (
	"context"
	"fmt"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
)

// Provider returns an authenticated provider client that re-authenticates
// when its token expires, and the endpoint options (region, interface) of
// the cloud. cloud names a clouds.yaml entry; empty reads OS_* variables.
func Provider(ctx context.Context, cloud string) (*gophercloud.ProviderClient, gophercloud.EndpointOpts, error) {
	var (
		ao  gophercloud.AuthOptions
		eo  gophercloud.EndpointOpts
		err error
	)
	if cloud != "" {
		ao, eo, _, err = clouds.Parse(clouds.WithCloudName(cloud))
	} else {
		ao, err = openstack.AuthOptionsFromEnv()
	}
	if err != nil {
		return nil, eo, fmt.Errorf("openstack service credentials: %w", err)
	}
	ao.AllowReauth = true
	pc, err := openstack.NewClient(ao.IdentityEndpoint)
	if err != nil {
		return nil, eo, fmt.Errorf("openstack: %w", err)
	}
	pc.HTTPClient.Timeout = 10 * time.Second
	if err := openstack.Authenticate(ctx, pc, ao); err != nil {
		return nil, eo, fmt.Errorf("openstack: log in as the clusterkeys service user: %w", err)
	}
	return pc, eo, nil
}
