package e2e

import (
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/internal/need"
)

// softHSMToken makes an isolated SoftHSM2 token with the project's script
// and returns the environment that points clusterkeys at it.
func softHSMToken(t *testing.T) []string {
	t.Helper()
	need.Tool(t, "softhsm2-util", "apt-get install softhsm2 opensc (or make deps)")
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "scripts", "softhsm.sh")
	out, err := exec.Command("bash", script, "init", t.TempDir(), "e2e-ca").Output()
	if err != nil {
		t.Fatalf("softhsm.sh init: %v", err)
	}
	var env []string
	for _, line := range strings.Split(string(out), "\n") {
		if kv, ok := strings.CutPrefix(line, "export "); ok {
			k, v, _ := strings.Cut(kv, "=")
			env = append(env, k+"="+strings.Trim(v, `'"`))
		}
	}
	if len(env) < 4 {
		t.Fatalf("softhsm.sh printed %q", out)
	}
	return env
}

// TestCAWithKeysInSoftHSM runs the CA functions unchanged with --keys
// pkcs11: the CA key is generated in the token and signs through it.
func TestCAWithKeysInSoftHSM(t *testing.T) {
	env := softHSMToken(t)
	s := startServer(t, serverOpts{args: []string{"--keys", "pkcs11"}, env: env})
	for _, alg := range []string{"ecdsa-p256", "rsa-2048"} {
		t.Run(alg, func(t *testing.T) {
			cluster := "hsm-" + alg
			ca := createCA(t, s, memberToken, cluster, map[string]any{"key_algorithm": alg})
			before := sign(t, s, memberToken, cluster, map[string]any{"csr": newCSR(t, p256(t), "alice", nil), "profile": "client"})
			if err := verifies(t, before.Certificate, ca.TrustBundle, x509.ExtKeyUsageClientAuth); err != nil {
				t.Fatalf("a certificate signed in the HSM does not verify: %v", err)
			}
			r := do(t, "POST", s.URL+"/v1/clusters/"+cluster+"/ca/rekey", memberToken, map[string]any{"expected_generation": 1})
			var next caResource
			r.json(t, &next)
			if r.Status != 200 || next.Generation != 2 {
				t.Fatalf("rekey: %d %s", r.Status, r.Body)
			}
			if err := verifies(t, before.Certificate, next.TrustBundle, x509.ExtKeyUsageClientAuth); err == nil {
				t.Fatal("the old CA's certificate still verifies after a rekey with grace 0")
			}
			var gen1, gen2 int
			for _, l := range tokenLabels(t, env) {
				switch {
				case strings.HasPrefix(l, "ca/"+cluster+"/1/"):
					gen1++
				case strings.HasPrefix(l, "ca/"+cluster+"/2/"):
					gen2++
				}
			}
			if gen1 != 0 || gen2 == 0 {
				t.Fatalf("the token holds %d objects of generation 1 and %d of generation 2: want the retired key destroyed in the token", gen1, gen2)
			}
		})
	}
	if entries, _ := os.ReadDir(s.StateDir); len(entries) > 0 {
		for _, e := range entries {
			if e.Name() == "master.key" {
				t.Error("pkcs11 custody created a software master key")
			}
		}
	}
}

// tokenLabels lists the labels of the objects in the token env names, as
// pkcs11-tool (OpenSC) sees them: an outside view of what custody keeps.
func tokenLabels(t *testing.T, env []string) []string {
	t.Helper()
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	pin, err := os.ReadFile(vars["CLUSTERKEYS_PKCS11_PIN_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("pkcs11-tool", "--module", vars["CLUSTERKEYS_PKCS11_MODULE"],
		"--token-label", vars["CLUSTERKEYS_PKCS11_TOKEN_LABEL"], "--login", "--pin", "env:CK_TEST_PIN", "--list-objects")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+vars["SOFTHSM2_CONF"], "CK_TEST_PIN="+strings.TrimSpace(string(pin)))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pkcs11-tool --list-objects: %v", err)
	}
	var labels []string
	for _, line := range strings.Split(string(out), "\n") {
		if l, ok := strings.CutPrefix(strings.TrimSpace(line), "label:"); ok {
			labels = append(labels, strings.TrimSpace(l))
		}
	}
	return labels
}
