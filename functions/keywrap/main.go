// Command keywrap is the Lambda function for wrap/unwrap: envelope encryption of data keys under a KEK that never leaves custody (/v1/keys…).
// Its routes are its entry in pkg/functions (functions.Keywrap). Build it as a bootstrap with `make lambda` (-tags lambda.norpc); its
// configuration comes from CLUSTERKEYS_* variables.
package main

import (
	_ "github.com/clusterkeys/clusterkeys/pkg/backends/all" // the stores and custody backends it can open (build tags choose them)
	"github.com/clusterkeys/clusterkeys/pkg/functions"
	"github.com/clusterkeys/clusterkeys/pkg/lambdaapp"
)

func main() { lambdaapp.Main(functions.Keywrap) }
