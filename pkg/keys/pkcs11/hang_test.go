package pkcs11

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/need"
	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
)

// hangShim builds testdata/hangshim.c into a PKCS#11 module that forwards
// to module but holds C_Sign and C_Decrypt while the returned file exists.
func hangShim(t *testing.T, module string) (shim, holdFile string) {
	t.Helper()
	gcc := need.Tool(t, "gcc", "apt-get install gcc (it builds the hung-token shim)")
	dir := t.TempDir()
	shim = filepath.Join(dir, "hangshim.so")
	holdFile = filepath.Join(dir, "hold")
	out, err := exec.Command(gcc, "-shared", "-fPIC", "-O1", "-Wall", "-o", shim,
		"-DREAL_MODULE="+strconv.Quote(module), "-DHOLD_FILE="+strconv.Quote(holdFile),
		filepath.Join("testdata", "hangshim.c"), "-ldl").CombinedOutput()
	if err != nil {
		t.Fatalf("build the shim: %v\n%s", err, out)
	}
	return shim, holdFile
}

// TestHungTokenDoesNotFreezeCustody holds the token's C_Sign and C_Decrypt
// (the shim makes them wait, as a hung HSM does) under a live Custody.
// While they hang: every caller's Sign returns at its deadline as
// unavailable, calls that do not need the hung functions go on, Check
// reports unhealthy at once, and no more than MaxStuckCalls calls are left
// inside the library. Once the token answers, custody heals by itself.
func TestHungTokenDoesNotFreezeCustody(t *testing.T) {
	tok := newToken(t)
	shim, holdFile := hangShim(t, tok.cfg.Module)
	tok.cfg.Module = shim
	const deadline = 500 * time.Millisecond
	const maxStuck = 3
	// Generous bound on "returns at its deadline" for a loaded machine.
	const slack = 3 * time.Second
	reg := metrics.NewRegistry()
	c := openCustody(t, tok, Options{CallTimeout: deadline, MaxStuckCalls: maxStuck, Registerer: reg})
	ctx := context.Background()
	s, err := c.GenerateSigner(ctx, "ca", keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("tbs"))
	if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
		t.Fatalf("Sign through the shim before the hang: %v", err)
	}
	if err := c.Check(ctx); err != nil {
		t.Fatalf("Check through the shim before the hang: %v", err)
	}

	if err := os.WriteFile(holdFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	release := func() { _ = os.Remove(holdFile) }
	t.Cleanup(release)

	first := make(chan error, 1)
	go func() {
		_, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
		first <- err
	}()
	t.Run("another caller's Sign returns at its deadline, as unavailable", func(t *testing.T) {
		start := time.Now()
		_, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
		took := time.Since(start)
		if !errors.Is(err, keys.ErrUnavailable) || api.ErrorFor(err).Status != 503 {
			t.Fatalf("Sign with the token hung = %v, want ErrUnavailable (503)", err)
		}
		if took > deadline+slack {
			t.Fatalf("Sign took %v with a %v deadline", took, deadline)
		}
		t.Logf("second Sign: unavailable after %v", took.Round(time.Millisecond))
	})
	t.Run("the hung Sign returns at its deadline too", func(t *testing.T) {
		select {
		case err := <-first:
			if !errors.Is(err, keys.ErrUnavailable) {
				t.Fatalf("first Sign = %v, want ErrUnavailable", err)
			}
		case <-time.After(deadline + slack):
			t.Fatal("the first Sign has not returned")
		}
	})
	t.Run("Check reports the stuck calls at once", func(t *testing.T) {
		start := time.Now()
		err := c.Check(ctx)
		took := time.Since(start)
		if !errors.Is(err, keys.ErrUnavailable) {
			t.Fatalf("Check with two calls stuck = %v, want ErrUnavailable", err)
		}
		if took > deadline {
			t.Fatalf("Check took %v: it must not wait for the token when calls are stuck", took)
		}
		if n := gauge(t, reg, "clusterkeys_pkcs11_stuck_calls"); n != 2 {
			t.Fatalf("clusterkeys_pkcs11_stuck_calls = %v, want 2", n)
		}
	})
	t.Run("calls that do not need the hung functions go on", func(t *testing.T) {
		if err := c.GenerateKEK(ctx, "kek"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Seal(ctx, "kek", []byte("seed"), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Signer(ctx, "ca"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("at the limit of stuck calls new calls fail at once", func(t *testing.T) {
		_, _ = s.Sign(rand.Reader, digest[:], crypto.SHA256) // the third stuck call
		start := time.Now()
		_, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
		took := time.Since(start)
		if !errors.Is(err, keys.ErrUnavailable) || took > deadline {
			t.Fatalf("Sign at the limit = %v after %v, want ErrUnavailable at once", err, took)
		}
		if _, err := c.Seal(ctx, "kek", []byte("seed"), nil); !errors.Is(err, keys.ErrUnavailable) {
			t.Fatalf("Seal at the limit = %v, want ErrUnavailable", err)
		}
		if n := gauge(t, reg, "clusterkeys_pkcs11_stuck_calls"); n != maxStuck {
			t.Fatalf("clusterkeys_pkcs11_stuck_calls = %v, want %d", n, maxStuck)
		}
	})

	release()
	t.Run("once the token answers, custody heals without a restart", func(t *testing.T) {
		took := waitHealthy(t, c, 5*time.Second)
		t.Logf("healthy again %v after the token answered", took.Round(time.Millisecond))
		sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		verify(t, s.Public(), digest[:], sig)
		if n := gauge(t, reg, "clusterkeys_pkcs11_stuck_calls"); n != 0 {
			t.Fatalf("clusterkeys_pkcs11_stuck_calls = %v after the release", n)
		}
		if n := gauge(t, reg, "clusterkeys_pkcs11_reconnects_total"); n != 0 {
			t.Fatalf("a hang is not a fault: reconnects_total = %v", n)
		}
	})
}

// TestCheckHonoursItsContext: with the token hung and no call stuck yet,
// Check's round trip gives up when its context ends (kmsplugin's Status
// and /readyz pass their own timeouts), not at the call timeout.
func TestCheckHonoursItsContext(t *testing.T) {
	tok := newToken(t)
	shim, holdFile := hangShim(t, tok.cfg.Module)
	tok.cfg.Module = shim
	c := openCustody(t, tok, Options{CallTimeout: time.Minute})
	if err := os.WriteFile(holdFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(holdFile) })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Check(ctx)
	if !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("Check with the token hung = %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Check took %v with a 300ms context", took)
	}
	_ = os.Remove(holdFile)
	waitHealthy(t, c, 5*time.Second)
}
