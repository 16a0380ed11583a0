package ca

import (
	"slices"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// signRouteNames are the routes of the sign-CSR function; every other CA
// route belongs to rekey-cluster.
var signRouteNames = []string{"ca_sign", "magnum_ca_sign"}

// SignRoutes are the routes of the sign-CSR function (functions/signcsr):
// the native sign route and Magnum's POST /v1/certificates.
func SignRoutes(a *Authority) []api.Route {
	return slices.DeleteFunc(allRoutes(a), func(r api.Route) bool { return !slices.Contains(signRouteNames, r.Name) })
}

// RekeyRoutes are the routes of the rekey-cluster function
// (functions/rekeycluster): create, show and rekey the CA, natively and
// through Magnum's GET and PATCH /v1/certificates/{cluster}.
func RekeyRoutes(a *Authority) []api.Route {
	return slices.DeleteFunc(allRoutes(a), func(r api.Route) bool { return slices.Contains(signRouteNames, r.Name) })
}

func allRoutes(a *Authority) []api.Route {
	return append(Routes(a), MagnumRoutes(a)...)
}
