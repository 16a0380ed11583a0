package backends

import (
	"context"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	_ "github.com/clusterkeys/clusterkeys/pkg/backends/all"
	"github.com/clusterkeys/clusterkeys/pkg/config"
)

// TestRegisteredBackends checks what the backends linked by
// pkg/backends/all tell the settings: the --keys and --store values, the
// flags' help and the errors, as they read before the registry (and as
// pkg/config's test fixture registers them).
func TestRegisteredBackends(t *testing.T) {
	var names []string
	for _, b := range config.CustodyBackends() {
		names = append(names, b.Name)
	}
	if got := strings.Join(names, " "); got != "software pkcs11 barbican" {
		t.Errorf("custody backends %q", got)
	}
	c := config.Default()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	c.BindFlags(fs)
	for flag, want := range map[string]string{
		"keys":  "key custody: software, pkcs11 or barbican",
		"store": "metadata store: sqlite:PATH or postgres://… (default sqlite:<state-dir>/clusterkeys.db)",
	} {
		if got := fs.Lookup(flag).Usage; got != want {
			t.Errorf("--%s usage %q, want %q", flag, got, want)
		}
	}
	for _, tt := range []struct{ keys, store, want string }{
		{"vault", "", `--keys "vault": want software, pkcs11 or barbican`},
		{"software", "mysql://x", `--store "mysql:"…: want sqlite:PATH, postgres://… or postgresql://…`},
	} {
		c := config.Default()
		c.Keys, c.Store = tt.keys, tt.store
		if _, err := c.Resolve(); err == nil || err.Error() != tt.want {
			t.Errorf("Resolve(--keys %s --store %s) = %v, want %q", tt.keys, tt.store, err, tt.want)
		}
	}
	for _, tt := range []struct{ store, want string }{
		{"sqlite:/x/y.db", "sqlite:/x/y.db"},
		{"postgres://u:pw@h/db", "postgres"},
		{"postgresql://u:pw@h/db", "postgres"},
	} {
		if got := (config.Config{Store: tt.store}).StoreName(); got != tt.want {
			t.Errorf("StoreName(%q) = %q, want %q", tt.store, got, tt.want)
		}
	}
}

// TestUnregisteredBackend: a value no linked backend registered fails at
// Open as before the registry, for a configuration Resolve did not check.
func TestUnregisteredBackend(t *testing.T) {
	c := config.Default()
	c.StateDir = t.TempDir()
	c = resolved(t, c)
	for _, tt := range []struct{ keys, store, want string }{
		{"vault", c.Store, `key custody "vault" is not built in yet`},
		{"software", "mysql://x", `open store "mysql:"…: not built in: want sqlite:PATH or postgres://…`},
	} {
		c.Keys, c.Store = tt.keys, tt.store
		b, err := Open(context.Background(), c, nil, nil)
		if err == nil {
			b.Close()
		}
		if err == nil || err.Error() != tt.want {
			t.Errorf("Open(--keys %s --store %s) = %v, want %q", tt.keys, tt.store, err, tt.want)
		}
	}
}
