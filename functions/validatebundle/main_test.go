package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoCustodyOrStore keeps the promise of DESIGN.md and of this
// command's doc: validatebundle links no key custody, key wrapping or
// metadata store code, so its binary stays small and its cold start short.
func TestLinksNoCustodyOrStore(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH, so the dependencies of validatebundle cannot be listed:", err)
	}
	const mod = "github.com/clusterkeys/clusterkeys/"
	forbidden := []string{"pkg/keys", "pkg/keywrap", "pkg/store"}
	// As tested and as `make lambda` builds it (-tags lambda.norpc).
	for _, tags := range []string{"", "lambda.norpc"} {
		out, err := exec.Command(gobin, "list", "-deps", "-tags", tags, ".").CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps -tags %q .: %v\n%s", tags, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			rel, ok := strings.CutPrefix(dep, mod)
			if !ok {
				continue
			}
			for _, f := range forbidden {
				if rel == f || strings.HasPrefix(rel, f+"/") {
					t.Errorf("validatebundle (tags %q) links %s; it must link no custody or store code", tags, dep)
				}
			}
		}
	}
}
