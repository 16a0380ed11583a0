package barbicanref

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// FuzzParseRef checks that any container_ref either names a container or
// secret of the configured Barbican by a UUID, or is refused with a 400
// container_ref_unsupported; never a panic, never another host.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{
		"0b9c1f3e-6f7a-4b1c-9a55-2b3c4d5e6f70",
		"http://barbican.example:9311/v1/containers/0b9c1f3e-6f7a-4b1c-9a55-2b3c4d5e6f70",
		"http://barbican.example:9311/v1/secrets/0b9c1f3e-6f7a-4b1c-9a55-2b3c4d5e6f70",
		"http://169.254.169.254/v1/containers/0b9c1f3e-6f7a-4b1c-9a55-2b3c4d5e6f70",
		"http://barbican.example:9311/v1/containers/../secrets/x",
		"http://barbican.example:9311@evil/v1/secrets/0b9c1f3e-6f7a-4b1c-9a55-2b3c4d5e6f70",
		"", "%", "http://[::1", "http://barbican.example:9311/v1/orders/0b9c1f3e-6f7a-4b1c-9a55-2b3c4d5e6f70?x=1",
	} {
		f.Add(s)
	}
	l, err := New(Config{Endpoint: "http://barbican.example:9311"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		kind, id, err := l.parseRef(ref)
		if err != nil {
			var e *api.Error
			if !errors.As(err, &e) || e.Status != 400 {
				t.Fatalf("parseRef(%q) = %v, want a 400", ref, err)
			}
			return
		}
		if kind != "containers" && kind != "secrets" {
			t.Fatalf("parseRef(%q) kind %q", ref, kind)
		}
		if !uuidOracle.MatchString(id) {
			t.Fatalf("parseRef(%q) id %q is not a UUID", ref, id)
		}
		if ref == id {
			return
		}
		// The loader builds its request from the configured endpoint and
		// this id; still, an accepted href must name that endpoint.
		u, err := url.Parse(ref)
		if err != nil || !strings.EqualFold(u.Scheme, "http") || !strings.EqualFold(u.Host, "barbican.example:9311") ||
			u.User != nil || !strings.HasSuffix(u.Path, "/v1/"+kind+"/"+id) {
			t.Fatalf("parseRef(%q) accepted a ref outside the configured Barbican", ref)
		}
	})
}

// uuidOracle is the regexp isUUID replaced (compiled at package init, it
// cost validatebundle's cold start); it stays as the tests' oracle.
var uuidOracle = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// FuzzIsUUID checks isUUID against the regexp it replaced.
func FuzzIsUUID(f *testing.F) {
	for _, s := range []string{"", "0b8a1a9e-2f44-4b8e-9a57-6c1c7f3c0d11", "0B8A1A9E-2F44-4B8E-9A57-6C1C7F3C0D11",
		"0b8a1a9e-2f44-4b8e-9a57-6c1c7f3c0d1", "0b8a1a9e-2f44-4b8e-9a57-6c1c7f3c0d111", "0b8a1a9e2f44-4b8e-9a57-6c1c7f3c0d11-",
		"0b8a1a9e-2f44-4b8e-9a57-6c1c7f3c0d1g", "0b8a1a9e-2f44-4b8e-9a57-6c1c7f3c0d11\n", "g0000000-0000-0000-0000-000000000000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := isUUID(s), uuidOracle.MatchString(s); got != want {
			t.Fatalf("isUUID(%q) = %v, the regexp says %v", s, got, want)
		}
	})
}
