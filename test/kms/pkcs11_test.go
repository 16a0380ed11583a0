package kms

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/internal/need"
)

// softHSMModule returns the SoftHSM2 PKCS#11 library; under CI its absence
// fails the test, elsewhere it skips with what to install.
func softHSMModule(t testing.TB) string {
	t.Helper()
	if m := os.Getenv("SOFTHSM2_MODULE"); m != "" {
		return m
	}
	for _, m := range []string{"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so", "/usr/lib64/pkcs11/libsofthsm2.so"} {
		if _, err := os.Stat(m); err == nil {
			if _, err := exec.LookPath("softhsm2-util"); err == nil {
				return m
			}
		}
	}
	need.Missing(t, "SoftHSM2 is missing: apt-get install softhsm2 (or run test/scripts/deps.sh)")
	return ""
}

// TestBuiltShimBinaryPKCS11 runs the kmsshim binary with its KEK in a
// SoftHSM2 token (an isolated token for this test), drives it with
// kube-apiserver's client, and checks that a restarted shim finds the KEK in
// the token again and decrypts what the first one wrapped.
func TestBuiltShimBinaryPKCS11(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the kmsshim binary")
	}
	ctx := context.Background()
	bin := shimBinary(t)
	env, pin := softHSMToken(t)
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	args := []string{"--keys", "pkcs11", "--state-dir", stateDir}
	sock := filepath.Join(socketDir(t), "kms.sock")

	p := startBinaryWith(t, bin, sock, args, env)
	c := kubeClient(t, sock)
	st, err := c.Status(ctx)
	if err != nil || st.Healthz != "ok" {
		t.Fatalf("Status with the KEK in SoftHSM2 = %+v, %v\n%s", st, err, p.log.String())
	}
	w, state := writeTransformer(t, c)
	if state.EncryptedObjectKeyID != st.KeyID {
		t.Fatalf("encrypt key_id %q, status key_id %q", state.EncryptedObjectKeyID, st.KeyID)
	}
	stored, raw, pw, key := storeSecret(t, w, "hsm")
	if err := p.stop(t); err != nil {
		t.Fatalf("kmsshim exit after SIGTERM: %v\n%s", err, p.log.String())
	}
	for _, secret := range []string{pin, pw} {
		if strings.Contains(p.log.String(), secret) {
			t.Fatal("the shim's log contains the PIN or the secret")
		}
	}

	startBinaryWith(t, bin, sock, args, env)
	got, _, err := readTransformer(t, sock).TransformFromStorage(ctx, stored, key)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("read back after a restart with the KEK in the token: %d bytes, %v", len(got), err)
	}
}

// softHSMToken makes an isolated SoftHSM2 token with the project's own
// script (random PINs, the user PIN in a 0600 file) and returns the
// environment that points kmsshim at it, and its PIN (to check that no log
// shows it).
func softHSMToken(t testing.TB) (env []string, pin string) {
	t.Helper()
	softHSMModule(t) // fail under CI, skip elsewhere, when SoftHSM2 is missing
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "scripts", "softhsm.sh")
	out, err := exec.Command("bash", script, "init", t.TempDir(), "ck-kms-test").Output()
	if err != nil {
		t.Fatalf("softhsm.sh init: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if kv, ok := strings.CutPrefix(line, "export "); ok {
			k, v, _ := strings.Cut(kv, "=")
			env = append(env, k+"="+strings.Trim(v, `'"`))
			if k == "CLUSTERKEYS_PKCS11_PIN_FILE" {
				b, err := os.ReadFile(strings.Trim(v, `'"`))
				if err != nil {
					t.Fatal(err)
				}
				pin = strings.TrimSpace(string(b))
			}
		}
	}
	if len(env) < 4 || pin == "" {
		t.Fatalf("softhsm.sh printed %q", out)
	}
	return env, pin
}

// BenchmarkShimBinaryRoundTripPKCS11 measures round trips through the built
// kmsshim binary with its KEK in SoftHSM2.
func BenchmarkShimBinaryRoundTripPKCS11(b *testing.B) {
	env, _ := softHSMToken(b)
	bin := shimBinary(b)
	sock := filepath.Join(socketDir(b), "kms.sock")
	startBinaryWith(b, bin, sock, []string{"--keys", "pkcs11", "--state-dir", b.TempDir()}, env)
	benchRoundTrips(b, sock)
}
