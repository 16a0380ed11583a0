package pkcs11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThalesGroup/crypto11"
	p11 "github.com/miekg/pkcs11"

	"github.com/clusterkeys/clusterkeys/internal/need"
	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
	"github.com/clusterkeys/clusterkeys/pkg/metrics/metricstest"
)

func TestNewConfig(t *testing.T) {
	dir := t.TempDir()
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte("  s3cret-pin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "group-readable")
	if err := os.WriteFile(open, []byte("s3cret-pin\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o640); err != nil { // past the umask
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantPIN string
		wantErr string
	}{
		{"the PIN file is read and trimmed", map[string]string{EnvPINFile: pinFile}, "s3cret-pin", ""},
		{"the PIN file wins over the PIN variable", map[string]string{EnvPINFile: pinFile, EnvPIN: "other"}, "s3cret-pin", ""},
		{"the PIN variable is used without a file", map[string]string{EnvPIN: "env-pin"}, "env-pin", ""},
		{"no PIN is not an error yet", map[string]string{}, "", ""},
		{"a missing PIN file is an error", map[string]string{EnvPINFile: filepath.Join(dir, "nope")}, "", "open PKCS#11 PIN file"},
		{"an empty PIN file is an error", map[string]string{EnvPINFile: empty}, "", "is empty"},
		{"a PIN file the group may read is refused", map[string]string{EnvPINFile: open}, "", "chmod 600"},
		{"a directory is not a PIN file", map[string]string{EnvPINFile: dir}, "", "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvPIN, tt.env[EnvPIN])
			c, err := NewConfig("/lib/x.so", "tok", tt.env[EnvPINFile])
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || c.PIN != tt.wantPIN || c.Module != "/lib/x.so" || c.TokenLabel != "tok" {
				t.Fatalf("NewConfig = %v (pin ok %v), %v", c, c.PIN == tt.wantPIN, err)
			}
		})
	}
	t.Run("the PIN is never printed", func(t *testing.T) {
		c := Config{Module: "/m.so", TokenLabel: "t", PIN: "s3cret-pin"}
		var logged bytes.Buffer
		slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "pkcs11", c)
		for _, s := range []string{c.String(), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprint(c), logged.String()} {
			if strings.Contains(s, "s3cret") {
				t.Fatalf("config printed with its PIN: %s", s)
			}
		}
	})
	t.Run("a config without module, label or PIN says what is missing", func(t *testing.T) {
		err := Config{}.Validate()
		for _, want := range []string{EnvModule, EnvTokenLabel, EnvPINFile} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Validate = %v, want it to name %s", err, want)
			}
		}
	})
}

func TestOpenRefusesBadSettings(t *testing.T) {
	tok := newToken(t)
	tests := []struct {
		name string
		cfg  func(Config) Config
	}{
		{"a wrong PIN", func(c Config) Config { c.PIN = "wrong-pin-4711"; return c }},
		{"an unknown token label", func(c Config) Config { c.TokenLabel = "no-such-token"; return c }},
		{"a module that does not exist", func(c Config) Config { c.Module = "/nonexistent/lib.so"; return c }},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused without naming the PIN", func(t *testing.T) {
			cfg := tt.cfg(tok.cfg)
			c, err := Open(cfg, Options{})
			if err == nil {
				c.Close()
				t.Fatal("Open succeeded")
			}
			if strings.Contains(err.Error(), cfg.PIN) {
				t.Fatalf("error contains the PIN: %v", err)
			}
		})
	}
}

func verify(t *testing.T, pub crypto.PublicKey, digest, sig []byte) {
	t.Helper()
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(p, digest, sig) {
			t.Fatal("ECDSA signature does not verify")
		}
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(p, crypto.SHA256, digest, sig); err != nil {
			t.Fatalf("RSA signature does not verify: %v", err)
		}
	default:
		t.Fatalf("unexpected public key %T", pub)
	}
}

// attr reads one boolean attribute of the private or secret key labelled ref.
func attr(t *testing.T, c *Custody, ref string, secret bool, typ uint) bool {
	t.Helper()
	var a *crypto11.Attribute
	withConn(t, c, func(cn *conn) {
		var key any
		var err error
		if secret {
			key, err = cn.cx.FindKey(nil, []byte(ref))
		} else {
			key, err = cn.cx.FindKeyPair(nil, []byte(ref))
		}
		if err != nil {
			t.Fatal(err)
		}
		if a, err = cn.cx.GetAttribute(key, typ); err != nil {
			t.Fatal(err)
		}
	})
	return len(a.Value) == 1 && a.Value[0] == 1
}

// The contract (keystest) covers generating, signing, loading, refused
// refs and destroying; what is PKCS#11's own is below: keys made in the
// token as sensitive and non-extractable, a held signer after its key is
// destroyed, labels that two keys carry, the reserved health label, and a
// failed decryption that leaves the token healthy.
func TestSigners(t *testing.T) {
	tok := newToken(t)
	c := openCustody(t, tok, Options{})
	ctx := context.Background()
	digest := sha256.Sum256([]byte("to be signed"))
	for _, alg := range []keys.Algorithm{keys.ECDSAP256, keys.RSA2048} {
		t.Run(string(alg)+" is generated in the token, sensitive and non-extractable", func(t *testing.T) {
			ref := "ca/" + string(alg)
			if _, err := c.GenerateSigner(ctx, ref, alg); err != nil {
				t.Fatal(err)
			}
			if attr(t, c, ref, false, p11.CKA_EXTRACTABLE) || !attr(t, c, ref, false, p11.CKA_SENSITIVE) {
				t.Fatal("the private key is extractable or not sensitive")
			}
		})
	}
	t.Run("a token signer makes a CA certificate that verifies", func(t *testing.T) {
		s, err := c.GenerateSigner(ctx, "ca/cert", keys.ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cluster CA"},
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.Public(), s)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := cert.CheckSignatureFrom(cert); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a signer held across its key's destruction no longer signs, and custody stays healthy", func(t *testing.T) {
		s, err := c.GenerateSigner(ctx, "ca/doomed", keys.ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Destroy(ctx, "ca/doomed"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); !errors.Is(err, keys.ErrNotFound) {
			t.Fatalf("Sign after Destroy: %v", err)
		}
		if err := c.Check(ctx); err != nil {
			t.Fatalf("a missing key made custody unhealthy: %v", err)
		}
	})
}

func TestKEKs(t *testing.T) {
	tok := newToken(t)
	c := openCustody(t, tok, Options{})
	ctx := context.Background()
	if err := c.GenerateKEK(ctx, "kek/a"); err != nil {
		t.Fatal(err)
	}
	if attr(t, c, "kek/a", true, p11.CKA_EXTRACTABLE) || !attr(t, c, "kek/a", true, p11.CKA_SENSITIVE) {
		t.Fatal("the KEK is extractable or not sensitive")
	}
	pt, aad := []byte("a 32-byte data encryption key..."), []byte("aad")
	ct, err := c.Seal(ctx, "kek/a", pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) != nonceSize+len(pt)+tagSize || bytes.Contains(ct, pt) {
		t.Fatalf("ciphertext of %d bytes", len(ct))
	}
	for _, i := range []int{0, nonceSize - 1, nonceSize, len(ct) - tagSize, len(ct) - 1} {
		tampered := bytes.Clone(ct)
		tampered[i] ^= 1
		t.Run(fmt.Sprintf("a flipped bit in byte %d fails as ErrDecrypt, custody stays up", i), func(t *testing.T) {
			got, err := c.Open(ctx, "kek/a", tampered, aad)
			if !errors.Is(err, keys.ErrDecrypt) || got != nil {
				t.Fatalf("Open = %q, %v; want ErrDecrypt", got, err)
			}
			if err := c.Check(ctx); err != nil {
				t.Fatalf("custody unhealthy after a bad ciphertext: %v", err)
			}
		})
	}
	t.Run("a label carried by two keys is refused, not guessed", func(t *testing.T) {
		withConn(t, c, func(cn *conn) {
			for range 2 {
				if _, err := cn.cx.GenerateSecretKeyWithLabel([]byte("dup"), []byte("kek/dup"), 256, crypto11.CipherAES); err != nil {
					t.Fatal(err)
				}
			}
		})
		_, err := c.Seal(ctx, "kek/dup", pt, nil)
		if err == nil || !strings.Contains(err.Error(), "refusing to guess") {
			t.Fatalf("err = %v", err)
		}
		if err := c.Destroy(ctx, "kek/dup"); err != nil {
			t.Fatal(err)
		}
		if err := c.GenerateKEK(ctx, "kek/dup"); err != nil {
			t.Fatalf("after destroying both, the ref is free again: %v", err)
		}
	})
	t.Run("the health key's label is reserved", func(t *testing.T) {
		if err := c.GenerateKEK(ctx, HealthKeyLabel); err == nil {
			t.Fatal("GenerateKEK with the health key's label succeeded")
		}
	})
}

func gauge(t *testing.T, reg *metrics.Registry, name string) float64 {
	t.Helper()
	return metricstest.Value(t, reg, name, nil)
}

// waitHealthy polls Check until it succeeds or the limit passes.
func waitHealthy(t *testing.T, c *Custody, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := c.Check(context.Background())
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("not healthy %v after the token came back: %v", limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTokenRemoval removes the token from under a live Custody (its
// directory moves away, as when an HSM goes off line), then restores it.
func TestTokenRemoval(t *testing.T) {
	tok := newToken(t)
	reg := metrics.NewRegistry()
	c := openCustody(t, tok, Options{Registerer: reg})
	ctx := context.Background()
	s, ct := signerAndSealed(t, c)
	digest := sha256.Sum256([]byte("x"))

	away := tok.dir + ".away"
	if err := os.Rename(tok.dir, away); err != nil {
		t.Fatal(err)
	}
	t.Run("with the token gone every call fails as unavailable, without panicking", func(t *testing.T) {
		calls := map[string]func() error{
			"seal":         func() error { _, err := c.Seal(ctx, "kek", []byte("seed"), nil); return err },
			"open":         func() error { _, err := c.Open(ctx, "kek", ct, nil); return err },
			"sign":         func() error { _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); return err },
			"signer":       func() error { _, err := c.Signer(ctx, "ca"); return err },
			"generate KEK": func() error { return c.GenerateKEK(ctx, "kek2") },
			"check":        func() error { return c.Check(ctx) },
		}
		for _, name := range []string{"seal", "open", "sign", "signer", "generate KEK", "check", "seal"} {
			err := calls[name]()
			if !errors.Is(err, keys.ErrUnavailable) {
				t.Fatalf("%s: err = %v, want ErrUnavailable", name, err)
			}
			if e := api.ErrorFor(err); e.Status != 503 {
				t.Fatalf("%s: mapped to %d %s", name, e.Status, e.Code)
			}
		}
		if up := gauge(t, reg, "clusterkeys_pkcs11_up"); up != 0 {
			t.Fatalf("clusterkeys_pkcs11_up = %v while the token is gone", up)
		}
	})
	if err := os.Rename(away, tok.dir); err != nil {
		t.Fatal(err)
	}
	t.Run("with the token back custody heals within 5 s, without a restart", func(t *testing.T) {
		took := waitHealthy(t, c, 5*time.Second)
		t.Logf("healthy again %v after the token came back", took)
		pt, err := c.Open(ctx, "kek", ct, nil)
		if err != nil || string(pt) != "seed" {
			t.Fatalf("Open of an old ciphertext = %q, %v", pt, err)
		}
		sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatalf("a signer made before the fault: %v", err)
		}
		verify(t, s.Public(), digest[:], sig)
		if _, err := c.Seal(ctx, "kek", []byte("seed"), nil); err != nil {
			t.Fatal(err)
		}
		if n := gauge(t, reg, "clusterkeys_pkcs11_reconnects_total"); n < 1 {
			t.Fatalf("reconnects_total = %v", n)
		}
		if up := gauge(t, reg, "clusterkeys_pkcs11_up"); up != 1 {
			t.Fatalf("clusterkeys_pkcs11_up = %v", up)
		}
	})
}

// signerAndSealed gives c a KEK "kek" and a P-256 key "ca", and returns
// the signer of "ca" and "seed" sealed under "kek".
func signerAndSealed(t *testing.T, c *Custody) (crypto.Signer, []byte) {
	t.Helper()
	ctx := context.Background()
	if err := c.GenerateKEK(ctx, "kek"); err != nil {
		t.Fatal(err)
	}
	s, err := c.GenerateSigner(ctx, "ca", keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := c.Seal(ctx, "kek", []byte("seed"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, ct
}

// TestModuleFinalized finalizes the PKCS#11 module under a live Custody
// (another user of the library calling C_Finalize): handles and sessions
// are gone at once.
func TestModuleFinalized(t *testing.T) {
	tok := newToken(t)
	c := openCustody(t, tok, Options{})
	ctx := context.Background()
	if err := c.GenerateKEK(ctx, "kek"); err != nil {
		t.Fatal(err)
	}
	ct, err := c.Seal(ctx, "kek", []byte("seed"), nil)
	if err != nil {
		t.Fatal(err)
	}
	other := p11.New(tok.cfg.Module)
	if other == nil {
		t.Fatal("cannot load the module")
	}
	t.Cleanup(other.Destroy)
	if err := other.Finalize(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Seal(ctx, "kek", []byte("seed"), nil); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("Seal with the module finalized: %v, want ErrUnavailable", err)
	}
	took := waitHealthy(t, c, 5*time.Second)
	t.Logf("healthy again after %v", took)
	if pt, err := c.Open(ctx, "kek", ct, nil); err != nil || string(pt) != "seed" {
		t.Fatalf("Open after recovery = %q, %v", pt, err)
	}
}

func TestClosedCustodyIsUnavailable(t *testing.T) {
	tok := newToken(t)
	c, err := Open(tok.cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	if err := c.Check(context.Background()); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("Check after Close = %v", err)
	}
}

func BenchmarkSignP256(b *testing.B) {
	tok := newToken(b)
	c := openCustody(b, tok, Options{})
	s, err := c.GenerateSigner(context.Background(), "ca", keys.ECDSAP256)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("tbs"))
	for b.Loop() {
		if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSealOpen32(b *testing.B) {
	tok := newToken(b)
	c := openCustody(b, tok, Options{})
	ctx := context.Background()
	if err := c.GenerateKEK(ctx, "kek"); err != nil {
		b.Fatal(err)
	}
	seed := make([]byte, 32)
	for b.Loop() {
		ct, err := c.Seal(ctx, "kek", seed, []byte("aad"))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Open(ctx, "kek", ct, []byte("aad")); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFaultUnderLoad removes the token while several goroutines seal, open
// and sign: every call either succeeds or fails with ErrUnavailable (never
// a panic, a decrypt error or a not-found), and all succeed again after.
func TestFaultUnderLoad(t *testing.T) {
	tok := newToken(t)
	c := openCustody(t, tok, Options{})
	ctx := context.Background()
	s, ct := signerAndSealed(t, c)
	digest := sha256.Sum256([]byte("x"))
	stop := make(chan struct{})
	type result struct{ ok, unavailable int }
	results := make(chan result, 4)
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			var r result
			defer func() { results <- r }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				switch i % 3 {
				case 0:
					_, err = c.Seal(ctx, "kek", []byte("seed"), nil)
				case 1:
					_, err = c.Open(ctx, "kek", ct, nil)
				case 2:
					_, err = s.Sign(rand.Reader, digest[:], crypto.SHA256)
				}
				switch {
				case err == nil:
					r.ok++
				case errors.Is(err, keys.ErrUnavailable):
					r.unavailable++
				default:
					errs <- err
					return
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	away := tok.dir + ".away"
	if err := os.Rename(tok.dir, away); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := os.Rename(away, tok.dir); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, c, 5*time.Second)
	time.Sleep(100 * time.Millisecond)
	close(stop)
	var total result
	for range 4 {
		r := <-results
		total.ok += r.ok
		total.unavailable += r.unavailable
	}
	select {
	case err := <-errs:
		t.Fatalf("a call under a token fault failed with neither success nor ErrUnavailable: %v", err)
	default:
	}
	t.Logf("%d calls succeeded, %d were unavailable", total.ok, total.unavailable)
	if total.unavailable == 0 {
		t.Fatal("no call noticed the token was gone")
	}
	if _, err := c.Open(ctx, "kek", ct, nil); err != nil {
		t.Fatal(err)
	}
}

// TestOtherProcesses: the KMS shim and localrun share one token from two
// processes. A key another process creates is found by label; a key another
// process destroys is reported missing (its cached handle is dropped), and
// custody stays healthy throughout.
func TestOtherProcesses(t *testing.T) {
	tok := newToken(t)
	tool := need.Tool(t, "pkcs11-tool", installHint)
	c := openCustody(t, tok, Options{})
	ctx := context.Background()
	pkcs11Tool := func(args ...string) {
		t.Helper()
		base := []string{"--module", tok.cfg.Module, "--token-label", tok.cfg.TokenLabel, "--login", "--pin", tok.cfg.PIN}
		if out, err := exec.Command(tool, append(base, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("pkcs11-tool %v: %v: %s", args, err, out)
		}
	}
	if _, err := c.Seal(ctx, "kek/elsewhere", []byte("x"), nil); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("before: %v", err)
	}
	pkcs11Tool("--keygen", "--key-type", "AES:32", "--label", "kek/elsewhere", "--id", "01")
	ct, err := c.Seal(ctx, "kek/elsewhere", []byte("x"), nil)
	if err != nil {
		t.Fatalf("a key made by another process: %v", err)
	}
	if _, err := c.Open(ctx, "kek/elsewhere", ct, nil); err != nil {
		t.Fatal(err)
	}
	pkcs11Tool("--delete-object", "--type", "secrkey", "--label", "kek/elsewhere")
	if _, err := c.Open(ctx, "kek/elsewhere", ct, nil); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("a key destroyed by another process: %v, want ErrNotFound", err)
	}
	if err := c.Check(ctx); err != nil {
		t.Fatalf("custody unhealthy: %v", err)
	}
}

// labelledObjects counts the objects of any class labelled ref.
func labelledObjects(t *testing.T, c *Custody, ref string) int {
	t.Helper()
	var n int
	withConn(t, c, func(cn *conn) {
		hs, err := cn.raw.labelled(ref)
		if err != nil {
			t.Fatal(err)
		}
		n = len(hs)
	})
	return n
}

// TestDestroyTakesLoneHalves: a generation that failed half way (or another
// tool) can leave the private or the public half of a pair alone in the
// token. Destroy removes it, so the ref can be used again.
func TestDestroyTakesLoneHalves(t *testing.T) {
	tok := newToken(t)
	c := openCustody(t, tok, Options{})
	ctx := context.Background()
	for _, tt := range []struct {
		name  string
		leave uint // the class of the half left behind
	}{
		{"a lone private key", p11.CKO_PRIVATE_KEY},
		{"a lone public key", p11.CKO_PUBLIC_KEY},
	} {
		t.Run(tt.name+" is destroyed and the ref is free again", func(t *testing.T) {
			ref := "ca/half-" + strconv.FormatUint(uint64(tt.leave), 10)
			if _, err := c.GenerateSigner(ctx, ref, keys.ECDSAP256); err != nil {
				t.Fatal(err)
			}
			other := uint(p11.CKO_PUBLIC_KEY)
			if tt.leave == p11.CKO_PUBLIC_KEY {
				other = p11.CKO_PRIVATE_KEY
			}
			withConn(t, c, func(cn *conn) {
				err := cn.raw.with(func(s p11.SessionHandle) error {
					hs, err := cn.raw.find(s, []*p11.Attribute{
						p11.NewAttribute(p11.CKA_CLASS, other),
						p11.NewAttribute(p11.CKA_LABEL, []byte(ref)),
					})
					if err != nil || len(hs) != 1 {
						return fmt.Errorf("find the other half: %d objects, %v", len(hs), err)
					}
					return cn.raw.mod.DestroyObject(s, hs[0])
				})
				if err != nil {
					t.Fatal(err)
				}
			})
			if n := labelledObjects(t, c, ref); n != 1 {
				t.Fatalf("%d objects labelled %q, want the lone half", n, ref)
			}
			if _, err := c.GenerateSigner(ctx, ref, keys.ECDSAP256); !errors.Is(err, keys.ErrConflict) {
				t.Fatalf("GenerateSigner over a lone half = %v, want ErrConflict", err)
			}
			if err := c.Destroy(ctx, ref); err != nil {
				t.Fatal(err)
			}
			if n := labelledObjects(t, c, ref); n != 0 {
				t.Fatalf("%d objects labelled %q after Destroy", n, ref)
			}
			if _, err := c.GenerateSigner(ctx, ref, keys.ECDSAP256); err != nil {
				t.Fatalf("GenerateSigner after Destroy: %v", err)
			}
		})
	}
}

// TestTamperedCiphertextCarriesTheTokenCode: a ciphertext that does not
// authenticate is ErrDecrypt, recognised by what C_Decrypt returned (the
// PKCS#11 code travels in the error), and custody stays healthy.
func TestTamperedCiphertextCarriesTheTokenCode(t *testing.T) {
	tok := newToken(t)
	c := openCustody(t, tok, Options{})
	ctx := context.Background()
	if err := c.GenerateKEK(ctx, "kek"); err != nil {
		t.Fatal(err)
	}
	ct, err := c.Seal(ctx, "kek", []byte("a 32-byte data encryption key..."), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	ct[len(ct)-1] ^= 1
	_, err = c.Open(ctx, "kek", ct, []byte("aad"))
	if !errors.Is(err, keys.ErrDecrypt) {
		t.Fatalf("Open of a tampered ciphertext = %v, want ErrDecrypt", err)
	}
	var code p11.Error
	if !errors.As(err, &code) {
		t.Fatalf("the error %q carries no PKCS#11 return value", err)
	}
	t.Logf("the token answered %v", code)
	if err := c.Check(ctx); err != nil {
		t.Fatalf("custody unhealthy after a tampered ciphertext: %v", err)
	}
}
