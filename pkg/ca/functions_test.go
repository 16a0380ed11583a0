package ca

import (
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

func TestFunctionsSplitTheRoutesWithoutOverlap(t *testing.T) {
	a := &Authority{}
	seen := map[string]string{}
	for fn, routes := range map[string][]string{"signcsr": names(SignRoutes(a)), "rekeycluster": names(RekeyRoutes(a))} {
		for _, p := range routes {
			if other, dup := seen[p]; dup {
				t.Errorf("%s is served by both %s and %s", p, other, fn)
			}
			seen[p] = fn
		}
	}
	if want := len(Routes(a)) + len(MagnumRoutes(a)); len(seen) != want {
		t.Errorf("the functions serve %d routes, want all %d", len(seen), want)
	}
	if seen["POST /v1/clusters/{cluster}/certificates"] != "signcsr" || seen["PATCH /v1/certificates/{cluster}"] != "rekeycluster" {
		t.Errorf("routes landed in the wrong function: %v", seen)
	}
}

func names(rs []api.Route) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Pattern)
	}
	return out
}
