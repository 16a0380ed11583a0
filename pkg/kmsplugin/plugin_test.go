package kmsplugin_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/kms/pkg/service"

	"github.com/clusterkeys/clusterkeys/internal/fakeclock"
	"github.com/clusterkeys/clusterkeys/pkg/kmsplugin"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
)

type fixture struct {
	env   *fakeEnvelope
	p     *kmsplugin.Plugin
	clock *fakeclock.Clock
	reg   *metrics.Registry
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureTB(t)
}

func newFixtureTB(t testing.TB) *fixture {
	t.Helper()
	env := newFakeEnvelope(t, "kubernetes-kms")
	clock := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	reg := metrics.NewRegistry()
	m, err := kmsplugin.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := kmsplugin.New(env, kmsplugin.Config{KeyName: "kubernetes-kms", StatusTTL: 5 * time.Second, Metrics: m, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{env: env, p: p, clock: clock, reg: reg}
}

func seed(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewRefusesIncompleteConfig(t *testing.T) {
	env := newFakeEnvelope(t, "k")
	if _, err := kmsplugin.New(nil, kmsplugin.Config{KeyName: "k"}); err == nil {
		t.Error("New with a nil envelope succeeded")
	}
	if _, err := kmsplugin.New(env, kmsplugin.Config{}); err == nil {
		t.Error("New without a key name succeeded")
	}
}

func TestEncryptDecrypt(t *testing.T) {
	ctx := context.Background()
	t.Run("a seed round trips and key_id names the active version", func(t *testing.T) {
		f := newFixture(t)
		s := seed(t)
		r, err := f.p.Encrypt(ctx, "uid-1", s)
		if err != nil {
			t.Fatal(err)
		}
		if r.KeyID != f.env.keyID(1) {
			t.Fatalf("key_id = %q, want version 1's %q", r.KeyID, f.env.keyID(1))
		}
		if bytes.Contains(r.Ciphertext, s) {
			t.Fatal("ciphertext contains the plaintext")
		}
		if err := kmsplugin.CheckEncryptResponse(r); err != nil {
			t.Fatalf("answer breaks kube-apiserver limits: %v", err)
		}
		got, err := f.p.Decrypt(ctx, "uid-2", &service.DecryptRequest{Ciphertext: r.Ciphertext, KeyID: r.KeyID, Annotations: r.Annotations})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, s) {
			t.Fatal("decrypt returned other bytes than were encrypted")
		}
	})
	t.Run("rotation changes key_id and old ciphertexts still decrypt", func(t *testing.T) {
		f := newFixture(t)
		s1 := seed(t)
		r1, err := f.p.Encrypt(ctx, "", s1)
		if err != nil {
			t.Fatal(err)
		}
		f.env.rotate(t)
		s2 := seed(t)
		r2, err := f.p.Encrypt(ctx, "", s2)
		if err != nil {
			t.Fatal(err)
		}
		if r2.KeyID == r1.KeyID || r2.KeyID != f.env.keyID(2) {
			t.Fatalf("after rotation key_id = %q (before %q), want %q", r2.KeyID, r1.KeyID, f.env.keyID(2))
		}
		for _, c := range []struct {
			r    *service.EncryptResponse
			want []byte
		}{{r1, s1}, {r2, s2}} {
			got, err := f.p.Decrypt(ctx, "", &service.DecryptRequest{Ciphertext: c.r.Ciphertext, KeyID: c.r.KeyID})
			if err != nil {
				t.Fatalf("decrypt under %s: %v", c.r.KeyID, err)
			}
			if !bytes.Equal(got, c.want) {
				t.Fatalf("decrypt under %s returned other bytes", c.r.KeyID)
			}
		}
	})
}

func TestDecryptRefuses(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := seed(t)
	r1, err := f.p.Encrypt(ctx, "", s)
	if err != nil {
		t.Fatal(err)
	}
	f.env.rotate(t)
	tampered := bytes.Clone(r1.Ciphertext)
	tampered[len(tampered)-1] ^= 0x80
	otherAAD, _, err := f.env.Wrap(ctx, "kubernetes-kms", s, []byte("some http client's aad"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  *service.DecryptRequest
		want codes.Code
	}{
		{"a key_id naming another version than the ciphertext", &service.DecryptRequest{Ciphertext: r1.Ciphertext, KeyID: f.env.keyID(2)}, codes.InvalidArgument},
		{"an empty key_id", &service.DecryptRequest{Ciphertext: r1.Ciphertext}, codes.InvalidArgument},
		{"a tampered ciphertext", &service.DecryptRequest{Ciphertext: tampered, KeyID: r1.KeyID}, codes.InvalidArgument},
		{"a ciphertext wrapped with other associated data", &service.DecryptRequest{Ciphertext: otherAAD, KeyID: f.env.keyID(2)}, codes.InvalidArgument},
		{"a ciphertext naming an unknown version", &service.DecryptRequest{Ciphertext: append([]byte{9}, r1.Ciphertext[1:]...), KeyID: r1.KeyID}, codes.NotFound},
		{"an empty ciphertext", &service.DecryptRequest{KeyID: r1.KeyID}, codes.InvalidArgument},
		{"a nil request", nil, codes.InvalidArgument},
		{"a ciphertext over 1 KiB", &service.DecryptRequest{Ciphertext: make([]byte, kmsplugin.MaxCiphertextSize+1), KeyID: r1.KeyID}, codes.InvalidArgument},
		{"a key_id over 1 KiB", &service.DecryptRequest{Ciphertext: r1.Ciphertext, KeyID: strings.Repeat("k", kmsplugin.MaxKeyIDSize+1)}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := f.p.Decrypt(ctx, "", tt.req)
			if err == nil {
				t.Fatalf("decrypt succeeded (%d bytes)", len(pt))
			}
			if got := status.Code(err); got != tt.want {
				t.Fatalf("code = %v, want %v (%v)", got, tt.want, err)
			}
			isNotSecret(t, err, s)
		})
	}
	if n := metricValue(t, f.reg, "clusterkeys_kms_errors_total", map[string]string{"op": "decrypt"}); n != float64(len(tests)) {
		t.Errorf("decrypt errors counted = %v, want %d", n, len(tests))
	}
}

func TestEncryptRefuses(t *testing.T) {
	ctx := context.Background()
	t.Run("an empty plaintext", func(t *testing.T) {
		f := newFixture(t)
		if _, err := f.p.Encrypt(ctx, "", nil); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("err = %v, want InvalidArgument", err)
		}
	})
	t.Run("a plaintext far larger than a seed, before custody is asked", func(t *testing.T) {
		f := newFixture(t)
		if _, err := f.p.Encrypt(ctx, "", make([]byte, kmsplugin.MaxPlaintextSize+1)); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("err = %v, want InvalidArgument", err)
		}
		if w, _ := f.env.counts(); w != 0 {
			t.Fatalf("custody was asked to wrap %d times", w)
		}
		if _, err := f.p.Encrypt(ctx, "", make([]byte, kmsplugin.MaxPlaintextSize)); err != nil {
			t.Fatalf("a plaintext at the limit: %v", err)
		}
	})
	t.Run("an answer kube-apiserver would refuse", func(t *testing.T) {
		f := newFixture(t)
		f.env.bigOut = true
		if _, err := f.p.Encrypt(ctx, "", seed(t)); status.Code(err) != codes.Internal {
			t.Fatalf("err = %v, want Internal", err)
		}
	})
	t.Run("custody down is Unavailable, counted as an error and timed", func(t *testing.T) {
		f := newFixture(t)
		if _, err := f.p.Encrypt(ctx, "", seed(t)); err != nil {
			t.Fatal(err)
		}
		f.env.setDown(errCustodyDown)
		_, err := f.p.Encrypt(ctx, "", seed(t))
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("err = %v, want Unavailable", err)
		}
		if n := metricValue(t, f.reg, "clusterkeys_kms_errors_total", map[string]string{"op": "encrypt"}); n != 1 {
			t.Fatalf("errors_total{op=encrypt} = %v, want 1", n)
		}
		if n := metricValue(t, f.reg, "clusterkeys_kms_operation_duration_seconds", map[string]string{"op": "encrypt"}); n != 2 {
			t.Fatalf("duration histogram of encrypt has %v observations, want 2", n)
		}
	})
}

func TestStatus(t *testing.T) {
	ctx := context.Background()
	t.Run("healthy after a real round trip, with the active key_id", func(t *testing.T) {
		f := newFixture(t)
		r, err := f.p.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.Healthz != "ok" || r.Version != "v2" || r.KeyID != f.env.keyID(1) {
			t.Fatalf("status = %+v", r)
		}
		if w, u := f.env.counts(); w != 1 || u != 1 {
			t.Fatalf("round trip made %d wraps and %d unwraps, want 1 and 1", w, u)
		}
		if h := metricValue(t, f.reg, "clusterkeys_kms_healthy", nil); h != 1 {
			t.Fatalf("healthy gauge = %v", h)
		}
	})
	t.Run("a healthy answer is cached until the TTL", func(t *testing.T) {
		f := newFixture(t)
		for range 3 {
			if _, err := f.p.Status(ctx); err != nil {
				t.Fatal(err)
			}
			f.clock.Advance(time.Second)
		}
		if w, _ := f.env.counts(); w != 1 {
			t.Fatalf("3 status calls within the TTL made %d round trips, want 1", w)
		}
		f.env.rotate(t)
		f.clock.Advance(5 * time.Second)
		r, err := f.p.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if w, _ := f.env.counts(); w != 2 {
			t.Fatalf("status after the TTL made %d round trips in all, want 2", w)
		}
		if r.KeyID != f.env.keyID(2) {
			t.Fatalf("status after rotation key_id = %q, want %q", r.KeyID, f.env.keyID(2))
		}
	})
	t.Run("custody down fails the RPC and is never cached", func(t *testing.T) {
		f := newFixture(t)
		if _, err := f.p.Status(ctx); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(6 * time.Second)
		f.env.setDown(errCustodyDown)
		for range 3 {
			r, err := f.p.Status(ctx)
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("status = %+v, %v; want an Unavailable error", r, err)
			}
		}
		if w, _ := f.env.counts(); w != 4 {
			t.Fatalf("wraps = %d, want 1 healthy + 3 failing attempts", w)
		}
		if h := metricValue(t, f.reg, "clusterkeys_kms_healthy", nil); h != 0 {
			t.Fatalf("healthy gauge = %v, want 0", h)
		}
		f.env.setDown(nil)
		if _, err := f.p.Status(ctx); err != nil {
			t.Fatalf("status after custody came back: %v", err)
		}
		if n := metricValue(t, f.reg, "clusterkeys_kms_custody_recoveries_total", nil); n != 1 {
			t.Fatalf("recoveries = %v, want 1", n)
		}
	})
	t.Run("an unavailable encrypt drops the cached healthy status", func(t *testing.T) {
		f := newFixture(t)
		if _, err := f.p.Status(ctx); err != nil {
			t.Fatal(err)
		}
		f.env.setDown(errCustodyDown)
		if _, err := f.p.Encrypt(ctx, "", seed(t)); err == nil {
			t.Fatal("encrypt succeeded with custody down")
		}
		if _, err := f.p.Status(ctx); err == nil {
			t.Fatal("status within the TTL still healthy after custody failed an encrypt")
		}
	})
	t.Run("a hung custody is unhealthy within the probe timeout, with one probe in flight", func(t *testing.T) {
		env := newFakeEnvelope(t, "kubernetes-kms")
		reg := metrics.NewRegistry()
		m, err := kmsplugin.NewMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		p, err := kmsplugin.New(env, kmsplugin.Config{KeyName: "kubernetes-kms", ProbeTimeout: 50 * time.Millisecond, Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		hang := make(chan struct{})
		env.setHang(hang)
		t.Cleanup(func() {
			select {
			case <-hang:
			default:
				close(hang)
			}
		})
		// Callers with a generous deadline of their own: the probe
		// timeout, not theirs, must end the wait.
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		var wg sync.WaitGroup
		errs := make([]error, 5)
		for i := range errs {
			wg.Go(func() { _, errs[i] = p.Status(cctx) })
		}
		wg.Wait()
		for _, err := range errs {
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "backend_unavailable") {
				t.Fatalf("status with a hung custody = %v, want Unavailable backend_unavailable", err)
			}
		}
		if w, _ := env.counts(); w != 1 {
			t.Fatalf("%d probes started while the first hung, want 1", w)
		}
		if h := metricValue(t, reg, "clusterkeys_kms_healthy", nil); h != 0 {
			t.Fatalf("healthy gauge = %v, want 0", h)
		}
		env.setHang(nil)
		close(hang) // the module answers at last: the stuck probe finishes
		deadline := time.Now().Add(5 * time.Second)
		for {
			if r, err := p.Status(ctx); err == nil && r.Healthz == "ok" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("status not healthy again after custody answered")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("a caller whose own deadline ends first gets DeadlineExceeded", func(t *testing.T) {
		env := newFakeEnvelope(t, "kubernetes-kms")
		p, err := kmsplugin.New(env, kmsplugin.Config{KeyName: "kubernetes-kms", ProbeTimeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		hang := make(chan struct{})
		env.setHang(hang)
		t.Cleanup(func() { close(hang) })
		cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		if _, err := p.Status(cctx); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("status = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("a round trip that returns other bytes is unhealthy", func(t *testing.T) {
		f := newFixture(t)
		f.env.wrongOut = true
		if _, err := f.p.Status(ctx); err == nil {
			t.Fatal("status healthy although unwrap returned other bytes")
		}
	})
	t.Run("an oversized ciphertext is unhealthy", func(t *testing.T) {
		f := newFixture(t)
		f.env.bigOut = true
		if _, err := f.p.Status(ctx); err == nil {
			t.Fatal("status healthy although kube-apiserver would refuse the ciphertexts")
		}
	})
}

func TestEnsureKey(t *testing.T) {
	ctx := context.Background()
	env := newFakeEnvelope(t, "existing")
	id, created, err := kmsplugin.EnsureKey(ctx, env, "existing", "")
	if err != nil || created || id != env.keyID(1) {
		t.Fatalf("EnsureKey(existing) = %q, %v, %v", id, created, err)
	}
	if _, created, err := kmsplugin.EnsureKey(ctx, env, "fresh", "p"); err != nil || !created {
		t.Fatalf("EnsureKey(fresh) created=%v err=%v", created, err)
	}
	env.setDown(errCustodyDown)
	_, _, err = kmsplugin.EnsureKey(ctx, env, "existing", "")
	if !errors.Is(err, errCustodyDown) || !strings.Contains(err.Error(), "existing") {
		t.Fatalf("EnsureKey with custody down: %v", err)
	}
}

func TestConcurrentCallsAreSafe(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 16 {
		wg.Go(func() {
			for range 4 {
				if i%4 == 0 {
					if _, err := f.p.Status(ctx); err != nil {
						errs <- err
					}
					continue
				}
				s := seed(t)
				r, err := f.p.Encrypt(ctx, "", s)
				if err != nil {
					errs <- err
					continue
				}
				got, err := f.p.Decrypt(ctx, "", &service.DecryptRequest{Ciphertext: r.Ciphertext, KeyID: r.KeyID})
				if err != nil || !bytes.Equal(got, s) {
					errs <- errors.Join(err, errors.New("round trip mismatch"))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// FuzzDecrypt feeds arbitrary ciphertexts and key ids to Decrypt: it must
// never panic, never answer with a plaintext for bytes that are not a
// genuine ciphertext with its own key id, and never put the seed in an error.
func FuzzDecrypt(f *testing.F) {
	ctx := context.Background()
	fx := newFixtureTB(f)
	s := bytes.Repeat([]byte{0x5a}, 32)
	r, err := fx.p.Encrypt(ctx, "", s)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(r.Ciphertext, r.KeyID)
	f.Add(r.Ciphertext[:len(r.Ciphertext)-1], r.KeyID)
	f.Add([]byte{}, "")
	f.Add(append([]byte{2}, r.Ciphertext[1:]...), r.KeyID)
	f.Fuzz(func(t *testing.T, ct []byte, keyID string) {
		pt, err := fx.p.Decrypt(ctx, "fuzz", &service.DecryptRequest{Ciphertext: ct, KeyID: keyID})
		if err == nil {
			if !bytes.Equal(ct, r.Ciphertext) || keyID != r.KeyID || !bytes.Equal(pt, s) {
				t.Fatalf("Decrypt accepted a forged ciphertext (%d bytes, key_id %q)", len(ct), keyID)
			}
			return
		}
		if pt != nil {
			t.Fatal("plaintext returned with an error")
		}
		isNotSecret(t, err, s)
	})
}
