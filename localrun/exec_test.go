package main

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/config"
)

// TestBootstrapEnvPassesEveryBackendsSettings: the bootstraps get the
// settings of every registered custody backend (flags, as absolute paths
// for files, and the variables they read), and the store with an absolute
// path, whichever backend is chosen.
func TestBootstrapEnvPassesEveryBackendsSettings(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("CLUSTERKEYS_PKCS11_PIN", "1234")
	t.Setenv("CLUSTERKEYS_MASTER_KEY", "")
	t.Setenv("SOFTHSM2_CONF", "/etc/softhsm2.conf")
	cfg := config.Default()
	cfg.StateDir = "state"
	cfg.PKCS11Module, cfg.PKCS11PinFile = "/usr/lib/softhsm/libsofthsm2.so", "pin"
	cfg.BarbicanEndpoint = "http://127.0.0.1:9311"
	cfg, err := cfg.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	env, err := bootstrapEnv(cfg)
	if err != nil {
		t.Fatal(err)
	}
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, want := range []string{
		"CLUSTERKEYS_KEYS=software",
		"CLUSTERKEYS_STORE=sqlite:" + abs("state/clusterkeys.db"),
		"CLUSTERKEYS_MASTER_KEY_FILE=" + abs("state/master.key"),
		"CLUSTERKEYS_MASTER_KEY=",
		"CLUSTERKEYS_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so",
		"CLUSTERKEYS_PKCS11_PIN_FILE=" + abs("pin"),
		"CLUSTERKEYS_PKCS11_CALL_TIMEOUT=10s",
		"CLUSTERKEYS_PKCS11_PIN=1234",
		"SOFTHSM2_CONF=/etc/softhsm2.conf",
		"CLUSTERKEYS_BARBICAN_ENDPOINT=http://127.0.0.1:9311",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("the bootstraps' environment lacks %s", want)
		}
	}
	for _, kv := range env {
		if kv == "CLUSTERKEYS_PKCS11_TOKEN_LABEL=" || kv == "CLUSTERKEYS_BARBICAN_PROJECT=" {
			t.Errorf("an unset setting is passed: %s", kv)
		}
	}
}
