package kmsplugin_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
	"github.com/clusterkeys/clusterkeys/pkg/metrics/metricstest"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// fakeEnvelope is an in-memory stand-in for pkg/keywrap.Service: AES-256-GCM
// KEK versions, ciphertext = version byte || nonce || sealed, key ids the
// SHA-256 of name and version.
type fakeEnvelope struct {
	mu       sync.Mutex
	name     string
	keys     [][]byte // index = version-1
	down     error    // returned by every call while set
	wraps    int
	unwraps  int
	creates  int
	bigOut   bool // Wrap returns an oversized ciphertext
	wrongOut bool // Unwrap returns other bytes
	// hang, while set, is received from before a Wrap proceeds: a token
	// that stops answering (close it to let the calls through).
	hang chan struct{}
}

func (f *fakeEnvelope) setHang(c chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hang = c
}

func newFakeEnvelope(t testing.TB, name string) *fakeEnvelope {
	t.Helper()
	f := &fakeEnvelope{name: name}
	f.rotate(t)
	return f
}

func (f *fakeEnvelope) rotate(t testing.TB) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	f.keys = append(f.keys, k)
}

func (f *fakeEnvelope) setDown(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = err
}

func (f *fakeEnvelope) counts() (wraps, unwraps int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wraps, f.unwraps
}

func (f *fakeEnvelope) version(v int) store.KEKVersion {
	h := sha256.Sum256(fmt.Appendf(nil, "%s/%d", f.name, v))
	return store.KEKVersion{Name: f.name, Version: v, KeyRef: fmt.Sprintf("kek/%s/%d", f.name, v), KeyID: "ck1:" + hex.EncodeToString(h[:16])}
}

func (f *fakeEnvelope) keyID(v int) string { return f.version(v).KeyID }

func gcm(key []byte) cipher.AEAD {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return a
}

func (f *fakeEnvelope) Create(_ context.Context, name, project string) (store.KEK, store.KEKVersion, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down != nil {
		return store.KEK{}, store.KEKVersion{}, false, f.down
	}
	f.creates++
	if name != f.name {
		f.name = name
		return store.KEK{Name: name, Project: project, ActiveVersion: len(f.keys)}, f.version(len(f.keys)), true, nil
	}
	return store.KEK{Name: name, Project: project, ActiveVersion: len(f.keys)}, f.version(len(f.keys)), false, nil
}

func (f *fakeEnvelope) Wrap(_ context.Context, name string, plaintext, aad []byte) ([]byte, store.KEKVersion, error) {
	f.mu.Lock()
	hang := f.hang
	f.wraps++
	f.mu.Unlock()
	if hang != nil {
		<-hang // like a cgo call into a hung module: the context cannot stop it
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down != nil {
		return nil, store.KEKVersion{}, f.down
	}
	if name != f.name {
		return nil, store.KEKVersion{}, fmt.Errorf("kek %q: %w", name, api.ErrNotFound)
	}
	v := len(f.keys)
	a := gcm(f.keys[v-1])
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, store.KEKVersion{}, err
	}
	out := append([]byte{byte(v)}, nonce...)
	out = a.Seal(out, nonce, plaintext, aad)
	if f.bigOut {
		out = append(out, bytes.Repeat([]byte{0}, 2048)...)
	}
	return out, f.version(v), nil
}

func (f *fakeEnvelope) Unwrap(_ context.Context, name string, ciphertext, aad []byte) ([]byte, store.KEKVersion, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unwraps++
	if f.down != nil {
		return nil, store.KEKVersion{}, f.down
	}
	if name != f.name {
		return nil, store.KEKVersion{}, fmt.Errorf("kek %q: %w", name, api.ErrNotFound)
	}
	if len(ciphertext) < 1+12+16 {
		return nil, store.KEKVersion{}, fmt.Errorf("short ciphertext: %w", keywrap.ErrDecrypt)
	}
	v := int(ciphertext[0])
	if v < 1 || v > len(f.keys) {
		return nil, store.KEKVersion{}, fmt.Errorf("key version %d: %w", v, api.ErrNotFound)
	}
	a := gcm(f.keys[v-1])
	pt, err := a.Open(nil, ciphertext[1:13], ciphertext[13:], aad)
	if err != nil {
		return nil, store.KEKVersion{}, &api.Error{Status: 400, Code: keywrap.CodeDecryptFailed, Detail: "decryption failed", Err: keywrap.ErrDecrypt}
	}
	if f.wrongOut {
		pt[0] ^= 1
	}
	return pt, f.version(v), nil
}

// metricValue returns the value of the counter or gauge name whose labels
// include want, summed over matching series.
func metricValue(t *testing.T, g metrics.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	return metricstest.Value(t, g, name, want)
}

var errCustodyDown = fmt.Errorf("hsm session lost: %w", api.ErrUnavailable)

func isNotSecret(t testing.TB, err error, secrets ...[]byte) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if len(s) > 0 && (strings.Contains(err.Error(), string(s)) || strings.Contains(err.Error(), hex.EncodeToString(s))) {
			t.Fatalf("error %q contains secret material", err)
		}
	}
}
