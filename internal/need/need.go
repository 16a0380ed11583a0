// Package need lets tests ask for the external components they drive
// (SoftHSM2, Barbican, openssl, gcc, …). A missing component fails the
// test under CI (CI=true), where everything must be installed, and skips
// it elsewhere with the message saying what to install. Both the main
// module's tests and the test module's (test/) use it.
package need

import (
	"os"
	"os/exec"
	"testing"
)

// Missing reports a component tb needs as missing: tb fails when the CI
// environment variable is "true" and is skipped otherwise. msg says what
// is missing and how to install it.
func Missing(tb testing.TB, msg string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg + " (CI=true, so every component must be present)")
	}
	tb.Skip(msg)
}

// Tool returns the path of the named program on PATH, or reports it
// Missing with install, the command that provides it.
func Tool(tb testing.TB, name, install string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Missing(tb, name+" is missing: "+install)
	}
	return path
}
