// Command keywrap is the Lambda function for wrap/unwrap: envelope encryption of data keys under a KEK that never leaves custody (/v1/keys…).
// Build it as a bootstrap with `make lambda` (-tags lambda.norpc); its
// configuration comes from CLUSTERKEYS_* variables.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/lambdaapp"
)

func main() {
	if err := lambdaapp.Run(context.Background(), "keywrap", func(d lambdaapp.Deps) []api.Route {
		return keywrap.Routes(keywrap.New(d.Backends.Store, d.Backends.Custody, keywrap.Options{Logger: d.Logger, Registerer: d.Registry}))
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
