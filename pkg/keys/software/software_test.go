package software

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
)

// memBlobs is an in-memory BlobStore with the contract's errors.
type memBlobs struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newMemBlobs() *memBlobs { return &memBlobs{m: map[string][]byte{}} }

func (s *memBlobs) PutBlob(_ context.Context, ref string, blob []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[ref]; ok {
		return fmt.Errorf("blob %q: %w", ref, api.ErrConflict)
	}
	s.m[ref] = bytes.Clone(blob)
	return nil
}

func (s *memBlobs) GetBlob(_ context.Context, ref string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[ref]
	if !ok {
		return nil, fmt.Errorf("blob %q: %w", ref, api.ErrNotFound)
	}
	return bytes.Clone(b), nil
}

func (s *memBlobs) DeleteBlob(_ context.Context, ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[ref]; !ok {
		return fmt.Errorf("blob %q: %w", ref, api.ErrNotFound)
	}
	delete(s.m, ref)
	return nil
}

// set overwrites a blob, as an attacker with write access to the store would.
func (s *memBlobs) set(ref string, blob []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[ref] = bytes.Clone(blob)
}

func randomKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, MasterKeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func newCustody(t testing.TB) (*Custody, *memBlobs, []byte) {
	t.Helper()
	blobs := newMemBlobs()
	mk := randomKey(t)
	c, err := New(mk, blobs)
	if err != nil {
		t.Fatal(err)
	}
	return c, blobs, mk
}

func TestLoadOrCreateMasterKey(t *testing.T) {
	t.Run("creates a 0600 file of 32 random bytes and reads the same key back", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state", "master.key")
		k1, err := LoadOrCreateMasterKey(context.Background(), path, emptyStore(t))
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 || fi.Size() != MasterKeySize {
			t.Fatalf("mode %v size %d, want 0600 and %d", fi.Mode().Perm(), fi.Size(), MasterKeySize)
		}
		if bytes.Equal(k1, make([]byte, MasterKeySize)) {
			t.Fatal("master key is all zero")
		}
		k2, err := LoadOrCreateMasterKey(context.Background(), path, emptyStore(t))
		if err != nil || !bytes.Equal(k1, k2) {
			t.Fatalf("second load: %v, same key %v", err, bytes.Equal(k1, k2))
		}
	})
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		wantErr string
	}{
		{"a group-readable file is refused", func(t *testing.T, path string) {
			writeFile(t, path, make([]byte, MasterKeySize), 0o640)
		}, "mode 0640"},
		{"a world-readable file is refused", func(t *testing.T, path string) {
			writeFile(t, path, make([]byte, MasterKeySize), 0o604)
		}, "mode 0604"},
		{"a short file is refused", func(t *testing.T, path string) {
			writeFile(t, path, make([]byte, 16), 0o600)
		}, "16 bytes long, want exactly 32"},
		{"an empty file is refused, not overwritten", func(t *testing.T, path string) {
			writeFile(t, path, nil, 0o600)
		}, "0 bytes long"},
		{"a long file is refused", func(t *testing.T, path string) {
			writeFile(t, path, make([]byte, 33), 0o600)
		}, "33 bytes long"},
		{"a directory is refused", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "master.key")
			tt.setup(t, path)
			before, _ := os.ReadFile(path)
			_, err := LoadOrCreateMasterKey(context.Background(), path, emptyStore(t))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Fatal("the refused file was changed")
			}
		})
	}
}

func writeFile(t *testing.T, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask may have cleared bits
		t.Fatal(err)
	}
}

func TestNewRefusesAWrongSizeMasterKey(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := New(make([]byte, n), newMemBlobs()); err == nil {
			t.Errorf("New with a %d-byte master key succeeded", n)
		}
	}
	if _, err := New(make([]byte, MasterKeySize), nil); err == nil {
		t.Error("New without a blob store succeeded")
	}
}

func TestSigners(t *testing.T) {
	ctx := context.Background()
	c, blobs, _ := newCustody(t)
	// RSA-3072 and RSA-4096 use the same code path; their key generation
	// takes seconds, so the unit tests stop at 2048.
	for _, alg := range []keys.Algorithm{keys.ECDSAP256, keys.ECDSAP384, keys.RSA2048} {
		t.Run(string(alg)+" key signs after being loaded back from its sealed blob", func(t *testing.T) {
			ref := "ca/" + string(alg)
			gen, err := c.GenerateSigner(ctx, ref, alg)
			if err != nil {
				t.Fatal(err)
			}
			blob, _ := blobs.GetBlob(ctx, ref)
			if secretBytes := privateBytes(t, gen); bytes.Contains(blob, secretBytes) {
				t.Fatal("the stored blob contains the private key in the clear")
			}
			loaded, err := c.Signer(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			verifySignature(t, loaded, gen.Public())
		})
	}
}

func privateBytes(t *testing.T, s crypto.Signer) []byte {
	t.Helper()
	switch k := s.(type) {
	case *ecdsa.PrivateKey:
		b, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return b
	case *rsa.PrivateKey:
		return k.D.Bytes()
	}
	t.Fatalf("unexpected key type %T", s)
	return nil
}

func verifySignature(t *testing.T, s crypto.Signer, pub crypto.PublicKey) {
	t.Helper()
	digest := sha256.Sum256([]byte("to be signed"))
	sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(p, digest[:], sig) {
			t.Fatal("ECDSA signature does not verify with the generated public key")
		}
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(p, crypto.SHA256, digest[:], sig); err != nil {
			t.Fatalf("RSA signature does not verify: %v", err)
		}
	default:
		t.Fatalf("unexpected public key %T", pub)
	}
}

func TestCustodyErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T, c *Custody, blobs *memBlobs, mk []byte) error
		want error
	}{
		{"a missing signer is not found", func(t *testing.T, c *Custody, _ *memBlobs, _ []byte) error {
			_, err := c.Signer(ctx, "nope")
			return err
		}, api.ErrNotFound},
		{"a reused ref conflicts", func(t *testing.T, c *Custody, _ *memBlobs, _ []byte) error {
			mustGenerate(t, c, "a")
			_, err := c.GenerateSigner(ctx, "a", keys.ECDSAP256)
			return err
		}, api.ErrConflict},
		{"a KEK ref reused for a KEK conflicts", func(t *testing.T, c *Custody, _ *memBlobs, _ []byte) error {
			mustKEK(t, c, "k")
			return c.GenerateKEK(ctx, "k")
		}, api.ErrConflict},
		{"a blob copied to another ref does not open", func(t *testing.T, c *Custody, blobs *memBlobs, _ []byte) error {
			mustGenerate(t, c, "a")
			mustGenerate(t, c, "b")
			a, _ := blobs.GetBlob(ctx, "a")
			blobs.set("b", a)
			_, err := c.Signer(ctx, "b")
			return err
		}, ErrBlobIntegrity},
		{"a KEK blob presented as a signing key does not open", func(t *testing.T, c *Custody, blobs *memBlobs, _ []byte) error {
			mustKEK(t, c, "k")
			k, _ := blobs.GetBlob(ctx, "k")
			blobs.set("s", k)
			_, err := c.Signer(ctx, "s")
			return err
		}, ErrBlobIntegrity},
		{"a signing key blob presented as a KEK does not open", func(t *testing.T, c *Custody, blobs *memBlobs, _ []byte) error {
			mustGenerate(t, c, "s")
			s, _ := blobs.GetBlob(ctx, "s")
			blobs.set("k", s)
			_, err := c.Seal(ctx, "k", []byte("x"), nil)
			return err
		}, ErrBlobIntegrity},
		{"a flipped bit in a blob is detected", func(t *testing.T, c *Custody, blobs *memBlobs, _ []byte) error {
			mustGenerate(t, c, "a")
			a, _ := blobs.GetBlob(ctx, "a")
			a[len(a)/2] ^= 1
			blobs.set("a", a)
			_, err := c.Signer(ctx, "a")
			return err
		}, ErrBlobIntegrity},
		{"an unknown blob format is refused", func(t *testing.T, c *Custody, blobs *memBlobs, _ []byte) error {
			mustGenerate(t, c, "a")
			a, _ := blobs.GetBlob(ctx, "a")
			a[0] = 2
			blobs.set("a", a)
			_, err := c.Signer(ctx, "a")
			return err
		}, ErrBlobIntegrity},
		{"another master key opens nothing", func(t *testing.T, c *Custody, blobs *memBlobs, _ []byte) error {
			mustGenerate(t, c, "a")
			other, err := New(randomKey(t), blobs)
			if err != nil {
				t.Fatal(err)
			}
			_, err = other.Signer(ctx, "a")
			return err
		}, ErrBlobIntegrity},
		{"a destroyed key is gone", func(t *testing.T, c *Custody, _ *memBlobs, _ []byte) error {
			mustGenerate(t, c, "a")
			if err := c.Destroy(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			_, err := c.Signer(ctx, "a")
			return err
		}, api.ErrNotFound},
		{"sealing with a missing KEK is not found", func(t *testing.T, c *Custody, _ *memBlobs, _ []byte) error {
			_, err := c.Seal(ctx, "nope", []byte("x"), nil)
			return err
		}, api.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, blobs, mk := newCustody(t)
			err := tt.run(t, c, blobs, mk)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("destroying a missing key is not an error", func(t *testing.T) {
		c, _, _ := newCustody(t)
		if err := c.Destroy(ctx, "never-existed"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("an empty ref is refused", func(t *testing.T) {
		c, _, _ := newCustody(t)
		if _, err := c.GenerateSigner(ctx, "", keys.ECDSAP256); err == nil {
			t.Fatal("GenerateSigner with an empty ref succeeded")
		}
		if err := c.GenerateKEK(ctx, ""); err == nil {
			t.Fatal("GenerateKEK with an empty ref succeeded")
		}
	})
	t.Run("an unknown algorithm is refused and nothing is stored", func(t *testing.T) {
		c, blobs, _ := newCustody(t)
		if _, err := c.GenerateSigner(ctx, "x", keys.Algorithm("dsa-1024")); err == nil {
			t.Fatal("GenerateSigner with an unknown algorithm succeeded")
		}
		if len(blobs.m) != 0 {
			t.Fatal("a blob was stored")
		}
	})
}

func mustGenerate(t *testing.T, c *Custody, ref string) crypto.Signer {
	t.Helper()
	s, err := c.GenerateSigner(context.Background(), ref, keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustKEK(t testing.TB, c *Custody, ref string) {
	t.Helper()
	if err := c.GenerateKEK(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
}

func TestSealOpen(t *testing.T) {
	ctx := context.Background()
	c, _, _ := newCustody(t)
	mustKEK(t, c, "k1")
	mustKEK(t, c, "k2")
	plaintext := []byte("a 32-byte data encryption key...")
	aad := []byte("secret/default/db-password")
	ct, err := c.Seal(ctx, "k1", plaintext, aad)
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) != len(plaintext)+sealOverhead {
		t.Fatalf("ciphertext is %d bytes, want nonce||ciphertext||tag = %d", len(ct), len(plaintext)+sealOverhead)
	}
	if bytes.Contains(ct, plaintext) {
		t.Fatal("ciphertext contains the plaintext")
	}
	t.Run("the same KEK and aad open it", func(t *testing.T) {
		got, err := c.Open(ctx, "k1", ct, aad)
		if err != nil || !bytes.Equal(got, plaintext) {
			t.Fatalf("Open = %q, %v", got, err)
		}
	})
	t.Run("two seals of the same plaintext differ (random nonce)", func(t *testing.T) {
		ct2, err := c.Seal(ctx, "k1", plaintext, aad)
		if err != nil || bytes.Equal(ct[:gcmNonceSize], ct2[:gcmNonceSize]) {
			t.Fatalf("nonce reused: %v", err)
		}
	})
	t.Run("an empty plaintext round-trips", func(t *testing.T) {
		e, err := c.Seal(ctx, "k1", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Open(ctx, "k1", e, nil)
		if err != nil || len(got) != 0 {
			t.Fatalf("Open = %q, %v", got, err)
		}
	})
	bad := []struct {
		name string
		ref  string
		ct   []byte
		aad  []byte
	}{
		{"a wrong aad fails", "k1", ct, []byte("secret/default/other")},
		{"a missing aad fails", "k1", ct, nil},
		{"another KEK fails", "k2", ct, aad},
		{"a truncated ciphertext fails", "k1", ct[:len(ct)-1], aad},
		{"a ciphertext shorter than nonce and tag fails", "k1", ct[:sealOverhead-1], aad},
		{"an empty ciphertext fails", "k1", nil, aad},
	}
	for i := range ct {
		tampered := bytes.Clone(ct)
		tampered[i] ^= 0x80
		bad = append(bad, struct {
			name string
			ref  string
			ct   []byte
			aad  []byte
		}{fmt.Sprintf("a flipped bit in byte %d fails", i), "k1", tampered, aad})
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Open(ctx, tt.ref, tt.ct, tt.aad)
			if !errors.Is(err, keywrap.ErrDecrypt) || got != nil {
				t.Fatalf("Open = %q, %v; want ErrDecrypt", got, err)
			}
			if strings.Contains(err.Error(), string(plaintext)) {
				t.Fatal("the error names the plaintext")
			}
		})
	}
}

func TestCheckIsARealRoundTrip(t *testing.T) {
	c, _, _ := newCustody(t)
	if err := c.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Check(ctx); err == nil {
		t.Fatal("Check with a cancelled context succeeded")
	}
}

func FuzzOpen(f *testing.F) {
	c, _, _ := newCustody(f)
	mustKEK(f, c, "k")
	ct, err := c.Seal(context.Background(), "k", []byte("seed"), []byte("aad"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ct, []byte("aad"))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, ciphertext, aad []byte) {
		pt, err := c.Open(context.Background(), "k", ciphertext, aad)
		if err == nil {
			if !bytes.Equal(pt, []byte("seed")) {
				t.Fatalf("forged plaintext %q", pt)
			}
			return
		}
		if !errors.Is(err, keywrap.ErrDecrypt) {
			t.Fatalf("Open error %v does not wrap ErrDecrypt", err)
		}
	})
}

func BenchmarkSignerLoadP256(b *testing.B) {
	c, _, _ := newCustody(b)
	ctx := context.Background()
	if _, err := c.GenerateSigner(ctx, "ca", keys.ECDSAP256); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.Signer(ctx, "ca"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignP256(b *testing.B) {
	c, _, _ := newCustody(b)
	ctx := context.Background()
	s, err := c.GenerateSigner(ctx, "ca", keys.ECDSAP256)
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
	c, _, _ := newCustody(b)
	ctx := context.Background()
	mustKEK(b, c, "k")
	seed := make([]byte, 32)
	aad := []byte("aad")
	for b.Loop() {
		ct, err := c.Seal(ctx, "k", seed, aad)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Open(ctx, "k", ct, aad); err != nil {
			b.Fatal(err)
		}
	}
}
