package functions

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/ca"
	"github.com/clusterkeys/clusterkeys/pkg/magnum"
)

// notInTable are the commands under functions/ that are not functions of
// the HTTP API, with why.
var notInTable = map[string]string{
	"kmsshim": "a long-running KMS v2 plugin on a unix socket, not a Lambda function",
}

// TestTableMatchesFunctionsDir fails when a functions/<name>/ directory has
// no entry in All, or an entry has no directory.
func TestTableMatchesFunctionsDir(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join("..", "..", "functions"))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if _, skip := notInTable[e.Name()]; e.IsDir() && !skip {
			dirs = append(dirs, e.Name())
		}
	}
	names := Names()
	for _, d := range dirs {
		if !slices.Contains(names, d) {
			t.Errorf("functions/%s has no entry in functions.All", d)
		}
	}
	for _, n := range names {
		if !slices.Contains(dirs, n) {
			t.Errorf("functions.All names %s, which has no functions/%s/main.go", n, n)
		}
	}
}

// TestFlagsMatchWhatIsLinked checks Store and Cgo against each function's
// dependencies, as `make lambda` builds it: a function with Store false
// links no store, custody or key-wrapping code (a short cold start), and a
// function links crypto11's cgo exactly when Cgo says so.
func TestFlagsMatchWhatIsLinked(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH, so the functions' dependencies cannot be listed:", err)
	}
	const mod = "github.com/clusterkeys/clusterkeys/"
	storeCode := []string{"pkg/keys", "pkg/keywrap", "pkg/store"}
	for _, f := range All {
		t.Run(f.Name, func(t *testing.T) {
			out, err := exec.Command(gobin, "list", "-deps", "-tags", "lambda.norpc", "../../functions/"+f.Name).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps ./functions/%s: %v\n%s", f.Name, err, out)
			}
			deps := strings.Fields(string(out))
			linksStore := slices.ContainsFunc(deps, func(dep string) bool {
				rel, ok := strings.CutPrefix(dep, mod)
				return ok && slices.ContainsFunc(storeCode, func(p string) bool { return rel == p || strings.HasPrefix(rel, p+"/") })
			})
			if linksStore != f.Store {
				t.Errorf("Store is %v, but the binary links store or custody code: %v", f.Store, linksStore)
			}
			if cgo := slices.Contains(deps, "github.com/miekg/pkcs11"); cgo != f.Cgo {
				t.Errorf("Cgo is %v, but the binary links github.com/miekg/pkcs11 (cgo): %v", f.Cgo, cgo)
			}
		})
	}
}

// TestRoutesListableWithoutBackends checks that a zero Deps builds every
// function's routes (the OpenAPI and SAM checks list them so), each with a
// pattern, a name and a handler, and no pattern served by two functions.
func TestRoutesListableWithoutBackends(t *testing.T) {
	seen := map[string]string{}
	d := &Deps{}
	for _, f := range All {
		rs := f.Routes(d)
		if len(rs) == 0 {
			t.Errorf("%s serves no route", f.Name)
		}
		for _, r := range rs {
			if r.Pattern == "" || r.Name == "" || r.Handler == nil {
				t.Errorf("%s: route %+v lacks a pattern, name or handler", f.Name, r)
			}
			if other, dup := seen[r.Pattern]; dup {
				t.Errorf("%q is served by both %s and %s", r.Pattern, other, f.Name)
			}
			seen[r.Pattern] = f.Name
		}
	}
}

// TestCARoutesSplitBetweenSignAndRekey: signcsr and rekeycluster serve
// every native and Magnum CA route between them, signing in signcsr.
func TestCARoutesSplitBetweenSignAndRekey(t *testing.T) {
	d := &Deps{}
	seen := map[string]bool{}
	for _, sign := range []bool{true, false} {
		for _, r := range d.caRoutes(sign) {
			seen[r.Pattern] = sign
		}
	}
	if want := len(ca.Routes(d.Authority())) + len(magnum.Routes(d.Authority(), "")); len(seen) != want {
		t.Errorf("the functions serve %d CA routes, want all %d", len(seen), want)
	}
	for p, sign := range map[string]bool{
		"POST /v1/clusters/{cluster}/certificates": true, "POST /v1/certificates": true,
		"PATCH /v1/certificates/{cluster}": false, "GET /v1/clusters/{cluster}": false, "POST /v1/clusters/{cluster}/ca/rekey": false,
	} {
		if got, ok := seen[p]; !ok || got != sign {
			t.Errorf("%s: served by signcsr %v (served: %v), want %v", p, got, ok, sign)
		}
	}
}

func TestLookup(t *testing.T) {
	for _, tc := range []struct {
		name    string
		wantErr bool
	}{
		{"signcsr", false},
		{"validatebundle", false},
		{"kmsshim", true},
		{"", true},
	} {
		f, err := Lookup(tc.name)
		if (err != nil) != tc.wantErr {
			t.Errorf("Lookup(%q) error %v, want error %v", tc.name, err, tc.wantErr)
		}
		if err == nil && f.Name != tc.name {
			t.Errorf("Lookup(%q) = %s", tc.name, f.Name)
		}
	}
}
