// Command rekeycluster is the Lambda function for rekey-cluster: create, show and rotate a cluster CA (PUT/GET /v1/clusters/{cluster}/ca, POST …/ca/rekey, Magnum's GET/PATCH /v1/certificates/{cluster}).
// Build it as a bootstrap with `make lambda` (-tags lambda.norpc); its
// configuration comes from CLUSTERKEYS_* variables.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/ca"
	"github.com/clusterkeys/clusterkeys/pkg/lambdaapp"
)

func main() {
	if err := lambdaapp.Run(context.Background(), "rekeycluster", func(d lambdaapp.Deps) []api.Route {
		return ca.RekeyRoutes(ca.New(d.Backends.Store, d.Backends.Custody, ca.Options{Logger: d.Logger, Registerer: d.Registry, SignerCacheSize: d.Backends.SignerCacheSize, PublicURL: d.Config.PublicURL}))
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
