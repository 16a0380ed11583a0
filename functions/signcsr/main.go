// Command signcsr is the Lambda function for sign-CSR: a cluster CA signs a CSR under the policy (POST /v1/clusters/{cluster}/certificates and Magnum's POST /v1/certificates).
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
	if err := lambdaapp.Run(context.Background(), "signcsr", func(d lambdaapp.Deps) []api.Route {
		return ca.SignRoutes(ca.New(d.Backends.Store, d.Backends.Custody, ca.Options{Logger: d.Logger, Registerer: d.Registry, SignerCacheSize: d.Backends.SignerCacheSize, PublicURL: d.Config.PublicURL}))
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
