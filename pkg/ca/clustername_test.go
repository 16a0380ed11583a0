package ca

import (
	"regexp"
	"strings"
	"testing"
)

// clusterNameOracle is the regexp validClusterName replaced.
var clusterNameOracle = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// FuzzValidClusterName checks validClusterName against the regexp it
// replaced.
func FuzzValidClusterName(f *testing.F) {
	for _, s := range []string{"", "a", "prod-1", "0b8a1a9e-2f44-4b8e-9a57-6c1c7f3c0d11", ".a", "-a", "a/b", "a b", "a\n", "é",
		strings.Repeat("x", 63), strings.Repeat("x", 64), "A._-9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validClusterName(s), clusterNameOracle.MatchString(s); got != want {
			t.Fatalf("validClusterName(%q) = %v, the regexp says %v", s, got, want)
		}
	})
}
