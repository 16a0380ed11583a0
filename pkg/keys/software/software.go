// Package software is the embedded key custody: every CA private key and
// every key-encryption key (KEK) is kept in the metadata store as a blob
// sealed with AES-256-GCM under one 32-byte master key held in a 0600 file.
//
// # Blob format
//
// A blob is a format byte (1), a random 12-byte nonce and the AES-256-GCM
// ciphertext. The associated data is the format byte, a domain string that
// says what the blob holds (a signing key or a KEK) and the blob's ref, so a
// blob copied under another ref, or a KEK presented as a signing key, does
// not open: such a blob is reported as ErrBlobIntegrity, never used.
//
// # Sealing with a KEK
//
// Seal and Open use a KEK with AES-256-GCM and a random 12-byte nonce; the
// output is nonce||ciphertext||tag. A ciphertext that does not authenticate
// yields an error wrapping keys.ErrDecrypt.
package software

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/clusterkeys/clusterkeys/pkg/keys"
)

// ErrBlobIntegrity means a stored blob does not open under the master key
// with its own identity: the master key is not the one the blob was sealed
// with, or the blob was altered or copied from another ref. It is a server
// fault (500), never a client error.
var ErrBlobIntegrity = errors.New("stored key blob does not authenticate under the master key (wrong master key, or blob altered or swapped)")

const (
	blobFormat    = 1
	domainSigner  = "clusterkeys/software/signer-pkcs8"
	domainKEK     = "clusterkeys/software/kek-aes256"
	domainCheck   = "clusterkeys/software/readiness-check"
	kekSize       = 32
	maxRefLength  = 512
	gcmNonceSize  = 12
	gcmTagSize    = 16
	sealOverhead  = gcmNonceSize + gcmTagSize
	blobOverhead  = 1 + sealOverhead
	checkProbeLen = 32
)

// Custody is software key custody. It is safe for concurrent use and keeps
// no key material in memory beyond the master key: every operation loads and
// opens the blob it needs, unless CacheKEKs asked it to keep opened KEKs for
// a short while.
type Custody struct {
	master cipher.AEAD
	blobs  keys.BlobStore

	mu     sync.Mutex
	kekTTL time.Duration               // 0: no KEK cache
	keks   *lru.Cache[string, kekOpen] // by ref, while kekTTL > 0
	now    func() time.Time
}

// kekOpen is a KEK opened from its blob, kept until expires.
type kekOpen struct {
	aead    cipher.AEAD
	expires time.Time
}

// maxCachedKEKs bounds the KEK cache; a full cache drops its least recently
// used KEK.
const maxCachedKEKs = 256

var _ keys.Custody = (*Custody)(nil)

// New returns custody that seals blobs under masterKey (MasterKeySize bytes)
// and keeps them in blobs.
func New(masterKey []byte, blobs keys.BlobStore) (*Custody, error) {
	if len(masterKey) != MasterKeySize {
		return nil, fmt.Errorf("software custody: master key is %d bytes, want %d", len(masterKey), MasterKeySize)
	}
	if blobs == nil {
		return nil, errors.New("software custody: no blob store")
	}
	aead, err := newAEAD(masterKey)
	if err != nil {
		return nil, fmt.Errorf("software custody: %w", err)
	}
	return &Custody{master: aead, blobs: blobs, now: time.Now}, nil
}

// CacheKEKs makes Seal and Open reuse a KEK opened from its blob for up to
// ttl instead of reading and opening the blob on every call (ttl <= 0 turns
// the cache off and empties it). A long-running process that wraps with the
// same KEK many times a second (the KMS shim) uses it. It keeps in memory
// only what the master key, which is in memory anyway, opens from the
// store; a blob never changes under its ref, and Destroy drops the cached
// KEK at once (a Destroy by another process is seen after at most ttl).
func (c *Custody) CacheKEKs(ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kekTTL = max(ttl, 0)
	c.keks = nil
	if c.kekTTL > 0 {
		c.keks, _ = lru.New[string, kekOpen](maxCachedKEKs) // fails only for a size <= 0
	}
}

// newAEAD returns AES-256-GCM whose Seal prepends a random 12-byte nonce.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	return cipher.NewGCMWithRandomNonce(block)
}

func blobAAD(domain, ref string) []byte {
	aad := make([]byte, 0, 2+len(domain)+len(ref))
	aad = append(aad, blobFormat)
	aad = append(aad, domain...)
	aad = append(aad, 0)
	return append(aad, ref...)
}

func checkRef(ref string) error {
	if ref == "" {
		return errors.New("empty key ref")
	}
	if len(ref) > maxRefLength {
		return fmt.Errorf("key ref longer than %d bytes", maxRefLength)
	}
	return nil
}

func (c *Custody) sealBlob(domain, ref string, secret []byte) []byte {
	out := make([]byte, 1, blobOverhead+len(secret))
	out[0] = blobFormat
	return c.master.Seal(out, nil, secret, blobAAD(domain, ref))
}

func (c *Custody) openBlob(domain, ref string, blob []byte) ([]byte, error) {
	if len(blob) < blobOverhead || blob[0] != blobFormat {
		return nil, fmt.Errorf("key %q: blob has an unknown format: %w", ref, ErrBlobIntegrity)
	}
	secret, err := c.master.Open(nil, nil, blob[1:], blobAAD(domain, ref))
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", ref, ErrBlobIntegrity)
	}
	return secret, nil
}

func (c *Custody) load(ctx context.Context, domain, ref string) ([]byte, error) {
	if err := checkRef(ref); err != nil {
		return nil, fmt.Errorf("software custody: %w", err)
	}
	blob, err := c.blobs.GetBlob(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("software custody: load key %q: %w", ref, err)
	}
	secret, err := c.openBlob(domain, ref, blob)
	if err != nil {
		return nil, fmt.Errorf("software custody: %w", err)
	}
	return secret, nil
}

// GenerateSigner creates a key of algorithm alg, stores it sealed under ref
// and returns it. An existing ref fails with an error wrapping
// keys.ErrConflict.
func (c *Custody) GenerateSigner(ctx context.Context, ref string, alg keys.Algorithm) (crypto.Signer, error) {
	if err := checkRef(ref); err != nil {
		return nil, fmt.Errorf("software custody: %w", err)
	}
	signer, err := keys.GenerateSoftware(alg)
	if err != nil {
		return nil, fmt.Errorf("software custody: generate key %q: %w", ref, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return nil, fmt.Errorf("software custody: encode key %q: %w", ref, err)
	}
	blob := c.sealBlob(domainSigner, ref, der)
	clear(der)
	if err := c.blobs.PutBlob(ctx, ref, blob); err != nil {
		return nil, fmt.Errorf("software custody: store key %q: %w", ref, err)
	}
	return signer, nil
}

// Signer returns the signing key stored under ref (an error wrapping
// keys.ErrNotFound when absent, ErrBlobIntegrity when the blob does not open).
func (c *Custody) Signer(ctx context.Context, ref string) (crypto.Signer, error) {
	der, err := c.load(ctx, domainSigner, ref)
	if err != nil {
		return nil, err
	}
	defer clear(der)
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("software custody: key %q: parse PKCS#8: %w", ref, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("software custody: key %q: %T is not a crypto.Signer", ref, key)
	}
	return signer, nil
}

// Destroy deletes the key (signing key or KEK) stored under ref; a missing
// key is not an error.
func (c *Custody) Destroy(ctx context.Context, ref string) error {
	if err := checkRef(ref); err != nil {
		return fmt.Errorf("software custody: %w", err)
	}
	c.forget(ref)
	// Forget it again once deleted: a Seal that read the blob just before
	// the delete may have cached it meanwhile.
	defer c.forget(ref)
	if err := c.blobs.DeleteBlob(ctx, ref); err != nil && !errors.Is(err, keys.ErrNotFound) {
		return fmt.Errorf("software custody: delete key %q: %w", ref, err)
	}
	return nil
}

// forget drops the cached KEK of ref, if any.
func (c *Custody) forget(ref string) {
	c.mu.Lock()
	if c.keks != nil {
		c.keks.Remove(ref)
	}
	c.mu.Unlock()
}

// GenerateKEK creates a random AES-256 key-encryption key and stores it
// sealed under ref. An existing ref fails with an error wrapping
// keys.ErrConflict.
func (c *Custody) GenerateKEK(ctx context.Context, ref string) error {
	if err := checkRef(ref); err != nil {
		return fmt.Errorf("software custody: %w", err)
	}
	kek := make([]byte, kekSize)
	if _, err := rand.Read(kek); err != nil {
		return fmt.Errorf("software custody: generate KEK %q: %w", ref, err)
	}
	blob := c.sealBlob(domainKEK, ref, kek)
	clear(kek)
	if err := c.blobs.PutBlob(ctx, ref, blob); err != nil {
		return fmt.Errorf("software custody: store KEK %q: %w", ref, err)
	}
	return nil
}

func (c *Custody) kek(ctx context.Context, ref string) (cipher.AEAD, error) {
	c.mu.Lock()
	ttl := c.kekTTL
	var e kekOpen
	ok := false
	if c.keks != nil {
		e, ok = c.keks.Get(ref)
	}
	c.mu.Unlock()
	if ttl <= 0 {
		return c.openKEK(ctx, ref)
	}
	if ok && c.now().Before(e.expires) {
		return e.aead, nil
	}
	aead, err := c.openKEK(ctx, ref)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.keks != nil {
		c.keks.Add(ref, kekOpen{aead: aead, expires: c.now().Add(c.kekTTL)})
	}
	c.mu.Unlock()
	return aead, nil
}

// openKEK reads the KEK blob of ref and opens it.
func (c *Custody) openKEK(ctx context.Context, ref string) (cipher.AEAD, error) {
	key, err := c.load(ctx, domainKEK, ref)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	if len(key) != kekSize {
		return nil, fmt.Errorf("software custody: KEK %q is %d bytes: %w", ref, len(key), ErrBlobIntegrity)
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, fmt.Errorf("software custody: KEK %q: %w", ref, err)
	}
	return aead, nil
}

// Seal encrypts plaintext with the KEK stored under ref, binding aad, and
// returns nonce||ciphertext||tag (12-byte random nonce, AES-256-GCM).
func (c *Custody) Seal(ctx context.Context, ref string, plaintext, aad []byte) ([]byte, error) {
	aead, err := c.kek(ctx, ref)
	if err != nil {
		return nil, err
	}
	return aead.Seal(make([]byte, 0, sealOverhead+len(plaintext)), nil, plaintext, aad), nil
}

// Open decrypts what Seal returned for the same ref and aad. A ciphertext
// that does not authenticate yields an error wrapping keys.ErrDecrypt.
func (c *Custody) Open(ctx context.Context, ref string, ciphertext, aad []byte) ([]byte, error) {
	aead, err := c.kek(ctx, ref)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < sealOverhead {
		return nil, fmt.Errorf("software custody: KEK %q: ciphertext too short: %w", ref, keys.ErrDecrypt)
	}
	plaintext, err := aead.Open(nil, nil, ciphertext, aad)
	if err != nil {
		return nil, fmt.Errorf("software custody: KEK %q: %w", ref, keys.ErrDecrypt)
	}
	return plaintext, nil
}

// ListKeys lists every key blob (ref and creation time, never contents)
// for the reconciler. It needs a blob store that can list (BlobLister).
func (c *Custody) ListKeys(ctx context.Context) ([]keys.Listed, error) {
	l, ok := c.blobs.(BlobLister)
	if !ok {
		return nil, errors.New("software custody: the blob store cannot list its blobs")
	}
	blobs, err := l.ListBlobs(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("software custody: list keys: %w", err)
	}
	out := make([]keys.Listed, 0, len(blobs))
	for _, b := range blobs {
		if strings.HasPrefix(b.Ref, barbicanPrefix) {
			continue
		}
		out = append(out, keys.Listed{Ref: b.Ref, Created: b.CreatedAt})
	}
	return out, nil
}

// Check is the readiness probe: a real seal and open round trip under the
// master key. It does not touch the blob store.
func (c *Custody) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	probe := make([]byte, checkProbeLen)
	if _, err := rand.Read(probe); err != nil {
		return fmt.Errorf("software custody check: %w", err)
	}
	aad := blobAAD(domainCheck, "")
	got, err := c.master.Open(nil, nil, c.master.Seal(nil, nil, probe, aad), aad)
	if err != nil || !bytes.Equal(got, probe) {
		return fmt.Errorf("software custody check: seal/open round trip failed: %w", keys.ErrUnavailable)
	}
	return nil
}
