// Package keystest is the conformance suite of the custody contract
// (keys.Custody). Every custody backend runs it from its own tests, with
// real components (a SQLite store, SoftHSM2, Barbican), so that a new
// backend proves itself with one call rather than a copy of another
// backend's tests:
//
//	func TestContract(t *testing.T) {
//		keystest.Run(t, func(t *testing.T) keys.Custody { return newCustody(t) })
//	}
//
// The suite holds a backend to what the CA, the wrap/unwrap function and
// the reconciler rely on: signers for every algorithm that sign and verify
// and load again by ref, the errors of keys (ErrNotFound, ErrConflict,
// ErrDecrypt) for the same causes whatever the backend, idempotent
// Destroy, refs that never collide, a listing that matches what was made
// and destroyed, and concurrent use.
package keystest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/keys"
)

// Run runs every case of the custody contract as a subtest of t. For each
// case it calls newCustody with the subtest's t for a custody that holds no
// keys yet (a fresh store, token or project); newCustody skips or fails t
// when its backend is missing, and releases what it opened with
// t.Cleanup.
func Run(t *testing.T, newCustody func(t *testing.T) keys.Custody) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCustody(t)
			if c == nil {
				t.Fatal("newCustody returned nil")
			}
			tc.run(t, c)
		})
	}
}

var cases = []struct {
	name string
	run  func(t *testing.T, c keys.Custody)
}{
	{"custody that works passes its check", testCheck},
	{"every algorithm makes a signer that signs, verifies and loads again by ref", testSigners},
	{"a missing key is not found", testNotFound},
	{"destroying a key removes it, and destroying it again is fine", testDestroy},
	{"a ref in use is refused and the key under it stays", testRefInUse},
	{"two refs never name the same key", testRefsDistinct},
	{"a KEK seals and opens, with a fresh nonce each time", testSealOpen},
	{"a ciphertext that does not authenticate is a decrypt error", testDecryptErrors},
	{"the listing shows what was made and not what was destroyed", testListKeys},
	{"signers and KEKs work from many goroutines at once", testConcurrency},
	{"of two racing generates of one ref exactly one wins", testGenerateRace},
}

// newRef returns a ref no other test uses, shaped like clusterkeys' own:
// kind is "ca" or "kek", the prefixes a listing recognises as clusterkeys'
// (a Barbican project may hold other secrets).
func newRef(t *testing.T, kind string) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return kind + "/keystest/1/" + hex.EncodeToString(b)
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	return t.Context()
}

func generate(t *testing.T, c keys.Custody, alg keys.Algorithm) (string, crypto.Signer) {
	t.Helper()
	ref := newRef(t, "ca")
	s, err := c.GenerateSigner(ctxFor(t), ref, alg)
	if err != nil {
		t.Fatalf("GenerateSigner(%s): %v", alg, err)
	}
	return ref, s
}

func generateKEK(t *testing.T, c keys.Custody) string {
	t.Helper()
	ref := newRef(t, "kek")
	if err := c.GenerateKEK(ctxFor(t), ref); err != nil {
		t.Fatalf("GenerateKEK: %v", err)
	}
	return ref
}

// hashFor is the digest the CA uses with a key of algorithm a.
func hashFor(a keys.Algorithm) crypto.Hash {
	if a == keys.ECDSAP384 {
		return crypto.SHA384
	}
	return crypto.SHA256
}

func digest(h crypto.Hash, msg []byte) []byte {
	if h == crypto.SHA384 {
		d := sha512.Sum384(msg)
		return d[:]
	}
	d := sha256.Sum256(msg)
	return d[:]
}

// signAndVerify signs msg with s and verifies the signature with pub.
func signAndVerify(s crypto.Signer, pub crypto.PublicKey, h crypto.Hash, msg []byte) error {
	d := digest(h, msg)
	sig, err := s.Sign(rand.Reader, d, h)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, d, sig) {
			return errors.New("ECDSA signature does not verify")
		}
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(pub, h, d, sig); err != nil {
			return fmt.Errorf("RSA signature does not verify: %w", err)
		}
	default:
		return fmt.Errorf("public key of type %T", pub)
	}
	return nil
}

// checkPublic reports whether pub is a key of algorithm a.
func checkPublic(a keys.Algorithm, pub crypto.PublicKey) error {
	var ok bool
	switch a {
	case keys.ECDSAP256, keys.ECDSAP384:
		curve := map[keys.Algorithm]elliptic.Curve{keys.ECDSAP256: elliptic.P256(), keys.ECDSAP384: elliptic.P384()}[a]
		k, isEC := pub.(*ecdsa.PublicKey)
		ok = isEC && k.Curve == curve
	case keys.RSA2048, keys.RSA3072, keys.RSA4096:
		bits := map[keys.Algorithm]int{keys.RSA2048: 2048, keys.RSA3072: 3072, keys.RSA4096: 4096}[a]
		k, isRSA := pub.(*rsa.PublicKey)
		ok = isRSA && k.N.BitLen() == bits
	}
	if !ok {
		return fmt.Errorf("public key %T is not a %s key", pub, a)
	}
	return nil
}

func testCheck(t *testing.T, c keys.Custody) {
	if err := c.Check(ctxFor(t)); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

func testSigners(t *testing.T, c keys.Custody) {
	for _, alg := range keys.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			ref, s := generate(t, c, alg)
			if err := checkPublic(alg, s.Public()); err != nil {
				t.Fatal(err)
			}
			h := hashFor(alg)
			if err := signAndVerify(s, s.Public(), h, []byte("generated")); err != nil {
				t.Fatalf("the generated signer: %v", err)
			}
			loaded, err := c.Signer(ctxFor(t), ref)
			if err != nil {
				t.Fatalf("Signer(%q): %v", ref, err)
			}
			if !publicEqual(loaded.Public(), s.Public()) {
				t.Fatal("the loaded signer has another public key than the generated one")
			}
			if err := signAndVerify(loaded, s.Public(), h, []byte("loaded")); err != nil {
				t.Fatalf("the loaded signer: %v", err)
			}
		})
	}
	t.Run("an unknown algorithm is refused and makes no key", func(t *testing.T) {
		ref := newRef(t, "ca")
		if _, err := c.GenerateSigner(ctxFor(t), ref, "ed448"); err == nil {
			t.Fatal("GenerateSigner(ed448) succeeded")
		}
		if _, err := c.Signer(ctxFor(t), ref); !errors.Is(err, keys.ErrNotFound) {
			t.Fatalf("Signer after a refused generate = %v, want keys.ErrNotFound", err)
		}
	})
}

func publicEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func testNotFound(t *testing.T, c keys.Custody) {
	ctx := ctxFor(t)
	missing := newRef(t, "ca")
	tests := []struct {
		name string
		call func() error
	}{
		{"Signer", func() error { _, err := c.Signer(ctx, missing); return err }},
		{"Seal", func() error { _, err := c.Seal(ctx, missing, []byte("x"), nil); return err }},
		{"Open", func() error {
			_, err := c.Open(ctx, missing, make([]byte, 64), nil)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, keys.ErrNotFound) {
				t.Fatalf("%s of a missing key = %v, want an error wrapping keys.ErrNotFound", tt.name, err)
			}
		})
	}
}

func testDestroy(t *testing.T, c keys.Custody) {
	ctx := ctxFor(t)
	signerRef, _ := generate(t, c, keys.ECDSAP256)
	kekRef := generateKEK(t, c)
	for _, ref := range []string{signerRef, kekRef} {
		if err := c.Destroy(ctx, ref); err != nil {
			t.Fatalf("Destroy(%q): %v", ref, err)
		}
	}
	if _, err := c.Signer(ctx, signerRef); !errors.Is(err, keys.ErrNotFound) {
		t.Errorf("Signer of a destroyed key = %v, want keys.ErrNotFound", err)
	}
	if _, err := c.Seal(ctx, kekRef, []byte("x"), nil); !errors.Is(err, keys.ErrNotFound) {
		t.Errorf("Seal with a destroyed KEK = %v, want keys.ErrNotFound", err)
	}
	for _, ref := range []string{signerRef, kekRef, newRef(t, "ca")} {
		if err := c.Destroy(ctx, ref); err != nil {
			t.Errorf("Destroy(%q) of a missing key = %v, want nil", ref, err)
		}
	}
}

func testRefInUse(t *testing.T, c keys.Custody) {
	ctx := ctxFor(t)
	signerRef, s := generate(t, c, keys.ECDSAP256)
	kekRef := generateKEK(t, c)
	sealed, err := c.Seal(ctx, kekRef, []byte("kept"), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"a signer over a signer", func() error { _, err := c.GenerateSigner(ctx, signerRef, keys.ECDSAP256); return err }},
		{"a KEK over a signer", func() error { return c.GenerateKEK(ctx, signerRef) }},
		{"a KEK over a KEK", func() error { return c.GenerateKEK(ctx, kekRef) }},
		{"a signer over a KEK", func() error { _, err := c.GenerateSigner(ctx, kekRef, keys.ECDSAP256); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, keys.ErrConflict) {
				t.Fatalf("= %v, want an error wrapping keys.ErrConflict", err)
			}
		})
	}
	loaded, err := c.Signer(ctx, signerRef)
	if err != nil || !publicEqual(loaded.Public(), s.Public()) {
		t.Fatalf("after the refusals the signer is %v, %v; want the first key", loaded, err)
	}
	if pt, err := c.Open(ctx, kekRef, sealed, nil); err != nil || string(pt) != "kept" {
		t.Fatalf("after the refusals the KEK opens %q, %v; want the first key", pt, err)
	}
}

func testRefsDistinct(t *testing.T, c keys.Custody) {
	ctx := ctxFor(t)
	_, s1 := generate(t, c, keys.ECDSAP256)
	_, s2 := generate(t, c, keys.ECDSAP256)
	if publicEqual(s1.Public(), s2.Public()) {
		t.Error("two refs hold the same signing key")
	}
	k1, k2 := generateKEK(t, c), generateKEK(t, c)
	sealed, err := c.Seal(ctx, k1, []byte("for k1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(ctx, k2, sealed, nil); !errors.Is(err, keys.ErrDecrypt) {
		t.Errorf("another KEK opening the ciphertext = %v, want keys.ErrDecrypt", err)
	}
}

func testSealOpen(t *testing.T, c keys.Custody) {
	ctx := ctxFor(t)
	ref := generateKEK(t, c)
	tests := []struct {
		name           string
		plaintext, aad []byte
	}{
		{"a secret with aad", []byte("a 32-byte data encryption key!!!"), []byte("cluster=c1")},
		{"without aad", []byte("x"), nil},
		{"an empty plaintext", []byte{}, []byte("aad")},
		{"64 KiB", bytes.Repeat([]byte{0xa5}, 64<<10), []byte("big")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct1, err := c.Seal(ctx, ref, tt.plaintext, tt.aad)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			ct2, err := c.Seal(ctx, ref, tt.plaintext, tt.aad)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if bytes.Equal(ct1, ct2) {
				t.Error("two seals of the same plaintext are equal (a reused nonce)")
			}
			// Short plaintexts turn up in random bytes by chance; 16 bytes do not.
			if len(tt.plaintext) >= 16 && bytes.Contains(ct1, tt.plaintext) {
				t.Error("the ciphertext contains the plaintext")
			}
			for _, ct := range [][]byte{ct1, ct2} {
				got, err := c.Open(ctx, ref, ct, tt.aad)
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if !bytes.Equal(got, tt.plaintext) {
					t.Fatal("Open returned other bytes than were sealed")
				}
			}
		})
	}
}

func testDecryptErrors(t *testing.T, c keys.Custody) {
	ctx := ctxFor(t)
	ref := generateKEK(t, c)
	aad := []byte("cluster=c1")
	ct, err := c.Seal(ctx, ref, []byte("a data encryption key"), aad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := slices.Clone(ct)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name       string
		ciphertext []byte
		aad        []byte
	}{
		{"another aad", ct, []byte("cluster=c2")},
		{"no aad where one was bound", ct, nil},
		{"a flipped first byte", flip(0), aad},
		{"a flipped middle byte", flip(len(ct) / 2), aad},
		{"a flipped last byte", flip(len(ct) - 1), aad},
		{"a truncated ciphertext", ct[:len(ct)-1], aad},
		{"a ciphertext shorter than a nonce", ct[:4], aad},
		{"an empty ciphertext", nil, aad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := c.Open(ctx, ref, tt.ciphertext, tt.aad)
			if !errors.Is(err, keys.ErrDecrypt) {
				t.Fatalf("Open = %v, want an error wrapping keys.ErrDecrypt", err)
			}
			if pt != nil {
				t.Fatal("Open returned plaintext with its error")
			}
		})
	}
}

func testListKeys(t *testing.T, c keys.Custody) {
	ctx := ctxFor(t)
	start := time.Now()
	listed := func() []string {
		t.Helper()
		ls, err := c.ListKeys(ctx)
		if err != nil {
			t.Fatalf("ListKeys: %v", err)
		}
		var refs []string
		for _, l := range ls {
			if !l.Created.IsZero() && (l.Created.Before(start.Add(-time.Minute)) || l.Created.After(time.Now().Add(time.Minute))) {
				t.Errorf("%s was created at %v, not during the test", l.Ref, l.Created)
			}
			refs = append(refs, l.Ref)
		}
		slices.Sort(refs)
		return refs
	}
	if refs := listed(); len(refs) != 0 {
		t.Fatalf("new custody lists %v, want nothing", refs)
	}
	signerRef, _ := generate(t, c, keys.ECDSAP256)
	kekRef := generateKEK(t, c)
	goneRef := generateKEK(t, c)
	if err := c.Destroy(ctx, goneRef); err != nil {
		t.Fatal(err)
	}
	want := []string{signerRef, kekRef}
	slices.Sort(want)
	if refs := listed(); !slices.Equal(refs, want) {
		t.Fatalf("ListKeys = %v, want %v", refs, want)
	}
	for _, ref := range want {
		if err := c.Destroy(ctx, ref); err != nil {
			t.Fatal(err)
		}
	}
	if refs := listed(); len(refs) != 0 {
		t.Fatalf("after destroying every key ListKeys = %v, want nothing", refs)
	}
}

func testConcurrency(t *testing.T, c keys.Custody) {
	ctx := ctxFor(t)
	signerRef, s := generate(t, c, keys.ECDSAP256)
	kekRef := generateKEK(t, c)
	const workers, rounds = 8, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*3)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loaded, err := c.Signer(ctx, signerRef)
			if err != nil {
				errs <- fmt.Errorf("worker %d: Signer: %w", w, err)
				return
			}
			for i := range rounds {
				msg := fmt.Appendf(nil, "worker %d round %d", w, i)
				for _, signer := range []crypto.Signer{s, loaded} {
					if err := signAndVerify(signer, s.Public(), crypto.SHA256, msg); err != nil {
						errs <- fmt.Errorf("worker %d round %d: %w", w, i, err)
					}
				}
				ct, err := c.Seal(ctx, kekRef, msg, []byte("aad"))
				if err != nil {
					errs <- fmt.Errorf("worker %d round %d: Seal: %w", w, i, err)
					continue
				}
				if pt, err := c.Open(ctx, kekRef, ct, []byte("aad")); err != nil || !bytes.Equal(pt, msg) {
					errs <- fmt.Errorf("worker %d round %d: Open = %q, %v", w, i, pt, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testGenerateRace(t *testing.T, c keys.Custody) {
	ctx := ctxFor(t)
	for _, kind := range []string{"signer", "KEK"} {
		t.Run(kind, func(t *testing.T) {
			ref := newRef(t, map[string]string{"signer": "ca", "KEK": "kek"}[kind])
			const racers = 4
			results := make(chan error, racers)
			var wg sync.WaitGroup
			for range racers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if kind == "signer" {
						_, err := c.GenerateSigner(ctx, ref, keys.ECDSAP256)
						results <- err
						return
					}
					results <- c.GenerateKEK(ctx, ref)
				}()
			}
			wg.Wait()
			close(results)
			won := 0
			for err := range results {
				switch {
				case err == nil:
					won++
				case !errors.Is(err, keys.ErrConflict):
					t.Errorf("a losing generate = %v, want keys.ErrConflict", err)
				}
			}
			if won != 1 {
				t.Fatalf("%d generates of one ref succeeded, want exactly 1", won)
			}
			ls, err := c.ListKeys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, l := range ls {
				if l.Ref == ref {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("custody holds %d keys named %q, want 1", n, ref)
			}
		})
	}
}
