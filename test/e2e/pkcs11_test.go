package e2e

import (
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// softHSMToken makes an isolated SoftHSM2 token with the project's script
// and returns the environment that points clusterkeys at it.
func softHSMToken(t *testing.T) []string {
	t.Helper()
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		msg := "SoftHSM2 is missing: apt-get install softhsm2 opensc (or make deps)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
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
	s := startServer(t, serverOpts{args: []string{"--keys", "pkcs11"}, env: softHSMToken(t)})
	for _, alg := range []string{"ecdsa-p256", "rsa-2048"} {
		t.Run(alg, func(t *testing.T) {
			cluster := "hsm-" + alg
			ca := createCA(t, s, memberToken, cluster, map[string]any{"key_algorithm": alg})
			before := sign(t, s, memberToken, cluster, map[string]any{"csr": newCSR(t, p256(t), "hsm-user", nil), "profile": "client"})
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
