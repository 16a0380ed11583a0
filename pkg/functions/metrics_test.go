package functions

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/internal/need"
)

// lambdaTags returns the Makefile's LAMBDA_TAGS (what make lambda and make
// package build the bootstraps with) for the given LAMBDA_BACKENDS, or for
// its default when backends is nil.
func lambdaTags(t *testing.T, backends *string) string {
	t.Helper()
	mk := need.Tool(t, "make", "apt-get install make")
	args := []string{"-s", "--no-print-directory", "-C", "../..", "--eval=print-lambda-tags: ; @echo $(LAMBDA_TAGS)"}
	if backends != nil {
		args = append(args, "LAMBDA_BACKENDS="+*backends)
	}
	out, err := exec.Command(mk, append(args, "print-lambda-tags")...).CombinedOutput()
	if err != nil {
		t.Fatalf("make print-lambda-tags: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// prometheusDeps returns the github.com/prometheus packages that pkg (a
// directory) links when built with tags.
func prometheusDeps(t *testing.T, gobin, tags, pkg string) []string {
	t.Helper()
	out, err := exec.Command(gobin, "list", "-deps", "-tags", tags, pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps -tags %q %s: %v\n%s", tags, pkg, err, out)
	}
	var prom []string
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/prometheus/") {
			prom = append(prom, dep)
		}
	}
	return prom
}

// TestLambdaBootstrapsLinkNoPrometheus: built as make lambda and make
// package build them (LAMBDA_TAGS, with the default backends and with all
// of them, as make e2e does), no function links a Prometheus package: its
// metrics are compiled out (pkg/metrics, tag clusterkeys.metrics.none).
// Nothing scrapes a Lambda sandbox, and the Prometheus client's package
// initialisation and size would cost every cold start.
func TestLambdaBootstrapsLinkNoPrometheus(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH, so the functions' dependencies cannot be listed:", err)
	}
	all := ""
	for _, tags := range []string{lambdaTags(t, nil), lambdaTags(t, &all)} {
		if !slices.Contains(strings.Fields(tags), "clusterkeys.metrics.none") {
			t.Errorf("the Makefile's LAMBDA_TAGS %q lack clusterkeys.metrics.none", tags)
		}
		for _, f := range All {
			if prom := prometheusDeps(t, gobin, tags, "../../functions/"+f.Name); len(prom) > 0 {
				t.Errorf("functions/%s built with -tags %q links %v", f.Name, tags, prom)
			}
		}
	}
}

// TestServersLinkPrometheus: localrun and the KMS shim, built as make build
// builds them (no tags), keep their Prometheus metrics: they serve
// /metrics.
func TestServersLinkPrometheus(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH, so the servers' dependencies cannot be listed:", err)
	}
	for _, pkg := range []string{"../../localrun", "../../functions/kmsshim"} {
		prom := prometheusDeps(t, gobin, "", pkg)
		for _, want := range []string{"github.com/prometheus/client_golang/prometheus", "github.com/prometheus/client_golang/prometheus/promhttp"} {
			if !slices.Contains(prom, want) {
				t.Errorf("%s built without tags does not link %s", pkg, want)
			}
		}
	}
}
