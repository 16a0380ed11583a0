// Command signcsr is the Lambda function for sign-CSR: a cluster CA signs a CSR under the policy (POST /v1/clusters/{cluster}/certificates and Magnum's POST /v1/certificates).
// Its routes are its entry in pkg/functions (functions.SignCSR). Build it as a bootstrap with `make lambda` (-tags lambda.norpc); its
// configuration comes from CLUSTERKEYS_* variables.
package main

import (
	_ "github.com/clusterkeys/clusterkeys/pkg/backends/all" // the stores and custody backends it can open (build tags choose them)
	"github.com/clusterkeys/clusterkeys/pkg/functions"
	"github.com/clusterkeys/clusterkeys/pkg/lambdaapp"
)

func main() { lambdaapp.Main(functions.SignCSR) }
