package kms

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/storage/value"
	kmsservice "k8s.io/kms/pkg/service"
)

// secretValue returns a Secret as kube-apiserver would store it (JSON here;
// protobuf in etcd is about as large) with a random password.
// storeSecret encrypts a new Secret named name with w as kube-apiserver
// writes it to etcd key /registry/secrets/default/<name>, and returns what
// is stored, the Secret's raw value, its password and the etcd key.
func storeSecret(t testing.TB, w value.Transformer, name string) (stored, raw []byte, password string, key value.Context) {
	t.Helper()
	raw, password = secretValue(t, name)
	key = value.DefaultContext("/registry/secrets/default/" + name)
	stored, err := w.TransformToStorage(context.Background(), raw, key)
	if err != nil {
		t.Fatalf("TransformToStorage: %v", err)
	}
	return stored, raw, password, key
}

func secretValue(t testing.TB, name string) (raw []byte, password string) {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	password = base64.RawURLEncoding.EncodeToString(b)
	s := corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: "0b8a1a9e-2f44-4b8e-9a57-6c1c7f3c0d11", ResourceVersion: "42"},
		Type:       corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			"password": []byte(password),
			"tls.crt":  bytes.Repeat([]byte("-----BEGIN CERTIFICATE-----\nMIIB"), 40),
		},
	}
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return raw, password
}

func waitStatusKeyID(t testing.TB, c kmsservice.Service, not string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := c.Status(ctx)
		cancel()
		if err == nil && st.Healthz == "ok" && st.KeyID != not {
			return st.KeyID
		}
		if time.Now().After(deadline) {
			t.Fatalf("status key_id still %q (or unhealthy: %v) after 30s", not, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestKubeAPIServerClient(t *testing.T) {
	ctx := context.Background()
	sock, kw, reg := startShimWithMetrics(t, "kubernetes-kms", 200*time.Millisecond)
	c := kubeClient(t, sock)

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.Version != "v2" || st.Healthz != "ok" || st.KeyID == "" {
		t.Fatalf("Status = %+v", st)
	}
	v1, err := kw.Active(ctx, "kubernetes-kms")
	if err != nil {
		t.Fatal(err)
	}
	if st.KeyID != v1.KeyID {
		t.Fatalf("status key_id %q is not the active version's %q", st.KeyID, v1.KeyID)
	}

	w1, state1 := writeTransformer(t, c)
	if state1.EncryptedObjectKeyID != st.KeyID {
		t.Fatalf("encrypt key_id %q differs from status key_id %q", state1.EncryptedObjectKeyID, st.KeyID)
	}
	stored1, raw1, pw1, key1 := storeSecret(t, w1, "s1")
	t.Logf("secret of %d bytes stored as %d bytes; seed ciphertext %d bytes", len(raw1), len(stored1), len(state1.EncryptedObjectEncryptedDEKSource))

	t.Run("the stored value is KMS v2 and hides the plaintext", func(t *testing.T) {
		if !bytes.HasPrefix(stored1, []byte(prefix)) {
			t.Fatalf("stored value starts %q, want %q", stored1[:min(len(stored1), 40)], prefix)
		}
		if bytes.Contains(stored1, []byte(pw1)) {
			t.Fatal("plaintext password visible in the stored value")
		}
	})

	t.Run("a fresh kube-apiserver decrypts it through the plugin", func(t *testing.T) {
		before := opsCount(t, reg, "decrypt")
		got, stale, err := readTransformer(t, sock).TransformFromStorage(ctx, stored1, key1)
		if n := opsCount(t, reg, "decrypt") - before; n != 1 {
			t.Errorf("the read made %v Decrypt calls to the shim, want 1 (a cold cache must ask the plugin)", n)
		}
		if err != nil {
			t.Fatalf("TransformFromStorage: %v", err)
		}
		if !bytes.Equal(got, raw1) || stale {
			t.Fatalf("read back %d bytes (stale=%v), want the %d bytes written, not stale", len(got), stale, len(raw1))
		}
	})

	t.Run("a value moved to another etcd key does not decrypt", func(t *testing.T) {
		if _, _, err := readTransformer(t, sock).TransformFromStorage(ctx, stored1, value.DefaultContext("/registry/secrets/default/other")); err == nil {
			t.Fatal("value decrypted under another key")
		}
	})

	t.Run("a tampered seed ciphertext is refused by the plugin", func(t *testing.T) {
		cp := bytes.Clone(state1.EncryptedObjectEncryptedDEKSource)
		cp[len(cp)-1] ^= 1
		_, err := c.Decrypt(ctx, "u", &kmsservice.DecryptRequest{Ciphertext: cp, KeyID: state1.EncryptedObjectKeyID})
		if err == nil {
			t.Fatal("tampered ciphertext decrypted")
		}
		if !strings.Contains(err.Error(), "decrypt_failed") {
			t.Fatalf("error %v does not say decrypt_failed", err)
		}
	})

	// Rotate the KEK: status key_id changes, kube-apiserver makes a new seed.
	v2, err := kw.Rotate(ctx, "kubernetes-kms", v1.Version)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	newID := waitStatusKeyID(t, c, st.KeyID)

	t.Run("rotation changes key_id to the new version's", func(t *testing.T) {
		if newID != v2.KeyID || newID == v1.KeyID {
			t.Fatalf("status key_id after rotation = %q, want %q (was %q)", newID, v2.KeyID, v1.KeyID)
		}
		_, state2 := writeTransformer(t, c)
		if state2.EncryptedObjectKeyID != v2.KeyID {
			t.Fatalf("encrypt after rotation key_id = %q, want %q", state2.EncryptedObjectKeyID, v2.KeyID)
		}
	})

	t.Run("old data still decrypts after rotation and is reported stale", func(t *testing.T) {
		got, stale, err := readTransformer(t, sock).TransformFromStorage(ctx, stored1, key1)
		if err != nil {
			t.Fatalf("TransformFromStorage after rotation: %v", err)
		}
		if !bytes.Equal(got, raw1) {
			t.Fatal("old value read back wrong after rotation")
		}
		if !stale {
			t.Fatal("value written under the old key_id not reported stale (storage migration would skip it)")
		}
	})

	t.Run("new data written after rotation decrypts and is current", func(t *testing.T) {
		w2, _ := writeTransformer(t, c)
		stored2, raw2, _, key2 := storeSecret(t, w2, "s2")
		got, stale, err := readTransformer(t, sock).TransformFromStorage(ctx, stored2, key2)
		if err != nil || stale || !bytes.Equal(got, raw2) {
			t.Fatalf("read back: %d bytes, stale=%v, err=%v", len(got), stale, err)
		}
	})

	t.Run("a key_id that does not name the ciphertext's version is refused", func(t *testing.T) {
		_, err := c.Decrypt(ctx, "u", &kmsservice.DecryptRequest{Ciphertext: state1.EncryptedObjectEncryptedDEKSource, KeyID: v2.KeyID})
		if err == nil {
			t.Fatal("decrypt with the new key_id for an old ciphertext succeeded")
		}
	})
}

func TestCustodyOutage(t *testing.T) {
	ctx := context.Background()
	kw, custody := newSwitchableKeywrap(t)
	sock, _, reg := startShimOver(t, kw, "kubernetes-kms", 200*time.Millisecond)
	c := kubeClient(t, sock)
	st, err := c.Status(ctx)
	if err != nil || st.Healthz != "ok" {
		t.Fatalf("Status before the outage = %+v, %v", st, err)
	}
	w, state := writeTransformer(t, c)
	stored, raw, _, key := storeSecret(t, w, "outage")

	custody.down.Store(true)
	t.Run("the Status RPC fails while custody is down", func(t *testing.T) {
		if _, err := c.Encrypt(ctx, "u", make([]byte, 32)); err == nil {
			t.Fatal("Encrypt succeeded with custody down")
		}
		// The failed Encrypt dropped the cached healthy status: no waiting for the TTL.
		if st, err := c.Status(ctx); err == nil {
			t.Fatalf("Status = %+v with custody down, want an error", st)
		}
		if _, _, err := coldReader(t, sock, state).TransformFromStorage(ctx, stored, key); err == nil {
			t.Fatal("a cold read decrypted with custody down")
		}
	})
	custody.down.Store(false)
	t.Run("health and reads come back with custody", func(t *testing.T) {
		if st, err := c.Status(ctx); err != nil || st.Healthz != "ok" || st.KeyID == "" {
			t.Fatalf("Status after the outage = %+v, %v", st, err)
		}
		got, _, err := coldReader(t, sock, state).TransformFromStorage(ctx, stored, key)
		if err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("read after the outage: %d bytes, %v", len(got), err)
		}
		if n := metricValueOf(t, reg, "clusterkeys_kms_custody_recoveries_total"); n != 1 {
			t.Fatalf("custody recoveries = %v, want 1", n)
		}
	})
}

// BenchmarkShimRoundTrip measures Encrypt+Decrypt of a seed through the
// socket with kube-apiserver's client, the shim in process (software
// custody, SQLite store).
func BenchmarkShimRoundTrip(b *testing.B) {
	sock, _ := startShim(b, "bench-kms", time.Second)
	benchRoundTrips(b, sock)
}

// benchRoundTrips runs b.N Encrypt+Decrypt round trips of a 32-byte seed
// through kube-apiserver's client on sock and reports round trips/s and the
// p50/p99 latency of one round trip.
func benchRoundTrips(b *testing.B, sock string) {
	b.Helper()
	ctx := context.Background()
	c := kubeClient(b, sock)
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Status(ctx); err != nil { // connect and warm
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, max(b.N, 1))
	start := time.Now()
	for b.Loop() {
		t0 := time.Now()
		r, err := c.Encrypt(ctx, "bench", seed)
		if err != nil {
			b.Fatal(err)
		}
		pt, err := c.Decrypt(ctx, "bench", &kmsservice.DecryptRequest{Ciphertext: r.Ciphertext, KeyID: r.KeyID, Annotations: r.Annotations})
		if err != nil {
			b.Fatal(err)
		}
		if !bytes.Equal(pt, seed) {
			b.Fatal("round trip returned other bytes")
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "roundtrips/s")
	b.ReportMetric(float64(percentile(lat, 50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(lat, 99).Microseconds()), "p99-µs")
}
