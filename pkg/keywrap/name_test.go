package keywrap

import (
	"regexp"
	"strings"
	"testing"
)

// nameOracle is the regexp validName replaced.
var nameOracle = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// FuzzValidName checks validName against the regexp it replaced.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"", "a", "kubernetes-kms", "A.b_c-9", ".a", "-a", "_a", "a/b", "a b", "a\n", "é", "a\x00",
		strings.Repeat("x", 200), "9", "a..", "Z-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validName(s), nameOracle.MatchString(s); got != want {
			t.Fatalf("validName(%q) = %v, the regexp says %v", s, got, want)
		}
	})
}
