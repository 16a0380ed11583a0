package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/ca"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/tlsbundle"
)

// TestSAMTemplateRoutesEveryFunction checks infra/sam/template.yaml against
// the functions' own route tables: every route is deployed, to the function
// that serves it, and nothing else is.
func TestSAMTemplateRoutesEveryFunction(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "infra", "sam", "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Each function resource names its bootstrap directory, then its events.
	codeURI := regexp.MustCompile(`CodeUri: \.\./\.\./bin/lambda/(\w+)/`)
	event := regexp.MustCompile(`Method: (\w+), Path: "([^"]+)"`)
	deployed := map[string][]string{}
	fn := ""
	for _, line := range strings.Split(string(b), "\n") {
		if m := codeURI.FindStringSubmatch(line); m != nil {
			fn = m[1]
		}
		if m := event.FindStringSubmatch(line); m != nil {
			deployed[fn] = append(deployed[fn], m[1]+" "+m[2])
		}
	}
	patterns := func(rs []api.Route) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Pattern)
		}
		return out
	}
	authority := ca.New(nil, nil, ca.Options{})
	served := map[string][]string{
		"signcsr":        patterns(ca.SignRoutes(authority)),
		"rekeycluster":   patterns(ca.RekeyRoutes(authority)),
		"keywrap":        patterns(keywrap.Routes(keywrap.New(nil, nil, keywrap.Options{}))),
		"validatebundle": patterns(tlsbundle.Routes(tlsbundle.NewValidator(tlsbundle.Options{}))),
	}
	for fn, want := range served {
		got := deployed[fn]
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: the template deploys %v, the function serves %v", fn, got, want)
		}
	}
	if len(deployed) != len(served) {
		t.Errorf("the template deploys functions %v", deployed)
	}
}
