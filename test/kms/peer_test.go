package kms

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThalesGroup/crypto11"
	kmsservice "k8s.io/kms/pkg/service"

	"github.com/clusterkeys/clusterkeys/pkg/keys/pkcs11"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/test/kmspeer"
)

// startMockApproach serves the peer of the KMS v2 benchmarks (kmspeer:
// the approach of the Kubernetes mock KMS plugin) with k8s.io/kms's own gRPC
// service on a fresh socket, with an AES-256 key generated in the token cfg
// names.
func startMockApproach(t testing.TB, cfg pkcs11.Config) string {
	t.Helper()
	cx, err := crypto11.Configure(&crypto11.Config{Path: cfg.Module, TokenLabel: cfg.TokenLabel, Pin: cfg.PIN, GCMIVLength: 12})
	if err != nil {
		t.Fatalf("crypto11: %v", err)
	}
	t.Cleanup(func() { cx.Close() })
	key, err := cx.GenerateSecretKey([]byte("mock-approach"), 256, crypto11.CipherAES)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := key.NewGCM()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(socketDir(t), "mock.sock")
	srv, err := kmspeer.Serve(sock, kmspeer.New("mock-approach-1", aead))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return sock
}

// softHSMConfig makes an isolated SoftHSM2 token for this process (it sets
// SOFTHSM2_CONF, which the module reads once) and returns its settings.
func softHSMConfig(t testing.TB) pkcs11.Config {
	t.Helper()
	env, pin := softHSMToken(t)
	cfg := pkcs11.Config{PIN: pin}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "SOFTHSM2_CONF":
			t.Setenv(k, v)
		case pkcs11.EnvModule:
			cfg.Module = v
		case pkcs11.EnvTokenLabel:
			cfg.TokenLabel = v
		}
	}
	return cfg
}

// TestMockApproachIsAFairPeer checks that the peer of the benchmark does
// real work through kube-apiserver's client: its round trip returns the
// seed, and a ciphertext altered by one bit is refused by the token.
func TestMockApproachIsAFairPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("uses SoftHSM2")
	}
	ctx := context.Background()
	c := kubeClient(t, startMockApproach(t, softHSMConfig(t)))
	seed := []byte("0123456789abcdef0123456789abcdef")
	r, err := c.Encrypt(ctx, "peer", seed)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(r.Ciphertext), string(seed)) {
		t.Fatal("the peer's ciphertext holds the seed")
	}
	pt, err := c.Decrypt(ctx, "peer", &kmsservice.DecryptRequest{Ciphertext: r.Ciphertext, KeyID: r.KeyID, Annotations: r.Annotations})
	if err != nil || string(pt) != string(seed) {
		t.Fatalf("round trip: %q, %v", pt, err)
	}
	r.Ciphertext[len(r.Ciphertext)-1] ^= 1
	if _, err := c.Decrypt(ctx, "peer", &kmsservice.DecryptRequest{Ciphertext: r.Ciphertext, KeyID: r.KeyID, Annotations: r.Annotations}); err == nil {
		t.Fatal("the peer opened a tampered ciphertext")
	}
}

// BenchmarkKMSv2SoftHSM compares, in one process and on one SoftHSM2
// token, Encrypt+Decrypt round trips through kube-apiserver's KMS v2 client
// to the shim (kmsplugin over keywrap over PKCS#11 custody, in process,
// with its SQLite store) and to the mock plugin's approach. The ratio of
// the two is the cost of versioned KEKs, health checks and fault recovery.
func BenchmarkKMSv2SoftHSM(b *testing.B) {
	cfg := softHSMConfig(b)
	b.Run("shim", func(b *testing.B) {
		c, err := pkcs11.Open(cfg, pkcs11.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		kw := keywrap.New(newStore(b), c, keywrap.Options{})
		sock, _, _ := startShimOver(b, kw, fmt.Sprintf("bench-%d", time.Now().UnixNano()), time.Second)
		benchRoundTrips(b, sock)
	})
	b.Run("mock-plugin-approach", func(b *testing.B) {
		benchRoundTrips(b, startMockApproach(b, cfg))
	})
}
