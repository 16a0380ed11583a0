package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/internal/need"
)

// TestREADMEWalkthrough runs the README's curl walkthrough as written,
// against a fresh server, so that the README cannot drift from the API.
func TestREADMEWalkthrough(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq", "openssl"} {
		need.Tool(t, tool, "apt-get install "+tool+" (or make deps)")
	}
	_, file, _, _ := runtime.Caller(0)
	readme, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## Walkthrough[^\n]*\n.*?```sh\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no walkthrough block")
	}
	script := string(m[1])
	s := startServer(t, serverOpts{generateToken: true})
	if !strings.Contains(script, "URL=http://127.0.0.1:8080") {
		t.Fatal("the walkthrough no longer sets URL=http://127.0.0.1:8080")
	}
	script = strings.Replace(script, "URL=http://127.0.0.1:8080", "URL="+s.URL, 1)

	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "CLUSTERKEYS_TOKEN="+s.Token)
	out, _ := cmd.CombinedOutput() // the script's own openssl verify fails on purpose
	got := string(out)
	for _, want := range []string{
		`"generation":1`,                 // responses are compact JSON
		"alice.crt: OK",                  // verifies before the rekey
		"alice.crt: verification failed", // and not after it
		`"code":"generation_mismatch"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("walkthrough output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, s.Token) {
		t.Error("the walkthrough printed the token")
	}
}
