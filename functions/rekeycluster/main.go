// Command rekeycluster is the Lambda function for rekey-cluster: create, show and rotate a cluster CA (PUT/GET /v1/clusters/{cluster}/ca, POST …/ca/rekey, Magnum's GET/PATCH /v1/certificates/{cluster}).
// Its routes are its entry in pkg/functions (functions.RekeyCluster). Build it as a bootstrap with `make lambda` (-tags lambda.norpc); its
// configuration comes from CLUSTERKEYS_* variables.
package main

import (
	_ "github.com/clusterkeys/clusterkeys/pkg/backends/all" // the stores and custody backends it can open (build tags choose them)
	"github.com/clusterkeys/clusterkeys/pkg/functions"
	"github.com/clusterkeys/clusterkeys/pkg/lambdaapp"
)

func main() { lambdaapp.Main(functions.RekeyCluster) }
