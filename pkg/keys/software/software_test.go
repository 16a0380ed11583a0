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

	"github.com/clusterkeys/clusterkeys/pkg/keys"
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
		return fmt.Errorf("blob %q: %w", ref, keys.ErrConflict)
	}
	s.m[ref] = bytes.Clone(blob)
	return nil
}

func (s *memBlobs) GetBlob(_ context.Context, ref string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[ref]
	if !ok {
		return nil, fmt.Errorf("blob %q: %w", ref, keys.ErrNotFound)
	}
	return bytes.Clone(b), nil
}

func (s *memBlobs) DeleteBlob(_ context.Context, ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[ref]; !ok {
		return fmt.Errorf("blob %q: %w", ref, keys.ErrNotFound)
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

// The contract (keystest) covers signing and loading; what is software's
// own is that the sealed blob never holds the private key in the clear.
func TestBlobsHoldNoPrivateKeyInTheClear(t *testing.T) {
	ctx := context.Background()
	c, blobs, _ := newCustody(t)
	for _, alg := range []keys.Algorithm{keys.ECDSAP256, keys.ECDSAP384, keys.RSA2048} {
		t.Run(string(alg), func(t *testing.T) {
			ref := "ca/" + string(alg)
			gen, err := c.GenerateSigner(ctx, ref, alg)
			if err != nil {
				t.Fatal(err)
			}
			blob, _ := blobs.GetBlob(ctx, ref)
			if secretBytes := privateBytes(t, gen); bytes.Contains(blob, secretBytes) {
				t.Fatal("the stored blob contains the private key in the clear")
			}
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

func TestCustodyErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T, c *Custody, blobs *memBlobs, mk []byte) error
		want error
	}{
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

// The contract (keystest) covers round trips and the usual forgeries; what
// is software's own is the layout nonce||ciphertext||tag and that no single
// flipped bit anywhere in it opens, nor shows up in the error.
func TestSealOpen(t *testing.T) {
	ctx := context.Background()
	c, _, _ := newCustody(t)
	mustKEK(t, c, "k1")
	plaintext := []byte("a 32-byte data encryption key...")
	aad := []byte("secret/default/db-password")
	ct, err := c.Seal(ctx, "k1", plaintext, aad)
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) != len(plaintext)+sealOverhead {
		t.Fatalf("ciphertext is %d bytes, want nonce||ciphertext||tag = %d", len(ct), len(plaintext)+sealOverhead)
	}
	for i := range ct {
		tampered := bytes.Clone(ct)
		tampered[i] ^= 0x80
		t.Run(fmt.Sprintf("a flipped bit in byte %d fails", i), func(t *testing.T) {
			got, err := c.Open(ctx, "k1", tampered, aad)
			if !errors.Is(err, keys.ErrDecrypt) || got != nil {
				t.Fatalf("Open = %q, %v; want keys.ErrDecrypt", got, err)
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
		if !errors.Is(err, keys.ErrDecrypt) {
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
