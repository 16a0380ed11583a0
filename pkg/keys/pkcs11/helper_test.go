package pkcs11

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/clusterkeys/clusterkeys/internal/need"
)

const installHint = "install softhsm2: apt-get install softhsm2 opensc (or run test/scripts/softhsm.sh install)"

// moduleCandidates are where distributions put libsofthsm2.so.
var moduleCandidates = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/lib/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
}

// requireSoftHSM returns the SoftHSM2 module and softhsm2-util. When they
// are missing the test is skipped, or fails with CI=true.
func requireSoftHSM(t testing.TB) (module, util string) {
	t.Helper()
	candidates := moduleCandidates
	if m := os.Getenv("SOFTHSM2_MODULE"); m != "" {
		candidates = []string{m}
	}
	for _, m := range candidates {
		if _, err := os.Stat(m); err == nil {
			module = m
			break
		}
	}
	util, err := exec.LookPath("softhsm2-util")
	if module == "" || err != nil {
		need.Missing(t, "SoftHSM2 is missing: "+installHint)
	}
	return module, util
}

// token is an isolated SoftHSM2 token made for one test.
type token struct {
	dir string // the token's own directory under tokens/
	cfg Config
}

// newToken initialises a token in t.TempDir() with random PINs and points
// SOFTHSM2_CONF at it (so tests using it cannot run in parallel).
func newToken(t testing.TB) token {
	t.Helper()
	module, util := requireSoftHSM(t)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	content := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(conf, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	pin, sopin := randomHex(t), randomHex(t)
	label := "ck-test"
	out, err := exec.Command(util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", sopin).CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v: %s", err, out)
	}
	entries, err := os.ReadDir(tokens)
	if err != nil || len(entries) != 1 {
		t.Fatalf("token directory: %v, %d entries", err, len(entries))
	}
	return token{
		dir: filepath.Join(tokens, entries[0].Name()),
		cfg: Config{Module: module, TokenLabel: label, PIN: pin},
	}
}

func randomHex(t testing.TB) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// openCustody opens custody on tok and closes it when the test ends.
func openCustody(t testing.TB, tok token, opts Options) *Custody {
	t.Helper()
	c, err := Open(tok.cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// withConn runs f with custody's current conn, held as a call holds it.
func withConn(t testing.TB, c *Custody, f func(cn *conn)) {
	t.Helper()
	cn, err := c.acquire("test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.release(cn)
	f(cn)
}
