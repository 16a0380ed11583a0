package keys

import (
	"context"
	"crypto"
)

// Signers is custody of CA signing keys. The CA (pkg/ca) uses it through
// its own interface ca.Keys, which Signers satisfies.
type Signers interface {
	// GenerateSigner creates a new key of algorithm alg named ref and
	// returns it. A ref in use fails with an error wrapping ErrConflict;
	// refs are never reused.
	GenerateSigner(ctx context.Context, ref string, alg Algorithm) (crypto.Signer, error)
	// Signer returns the key named ref (an error wrapping ErrNotFound when
	// absent). The signer is safe for concurrent use.
	Signer(ctx context.Context, ref string) (crypto.Signer, error)
	// Destroy deletes the key named ref (a signing key or a KEK); deleting
	// a missing key is not an error.
	Destroy(ctx context.Context, ref string) error
}

// KEKs is custody of key-encryption keys (AES-256), which seal and open
// data but never leave custody. The wrap/unwrap function (pkg/keywrap)
// uses it through its own interface keywrap.Custody.
type KEKs interface {
	// GenerateKEK creates a new KEK named ref (an error wrapping
	// ErrConflict when ref is in use).
	GenerateKEK(ctx context.Context, ref string) error
	// Seal encrypts plaintext under the KEK ref, binding aad; sealing the
	// same plaintext twice gives different ciphertexts. A missing KEK
	// fails with an error wrapping ErrNotFound.
	Seal(ctx context.Context, ref string, plaintext, aad []byte) ([]byte, error)
	// Open decrypts what Seal returned for the same ref and aad; a
	// ciphertext or aad that does not authenticate fails with an error
	// wrapping ErrDecrypt.
	Open(ctx context.Context, ref string, ciphertext, aad []byte) ([]byte, error)
	// Destroy deletes the key named ref; deleting a missing key is not an
	// error.
	Destroy(ctx context.Context, ref string) error
}

// Custody is the contract every custody backend implements: signing keys,
// KEKs, a listing for the reconciler and a readiness check. The
// conformance suite pkg/keys/keystest holds a backend to it.
type Custody interface {
	Signers
	KEKs
	// ListKeys lists the keys custody holds that clusterkeys made (by ref,
	// never material; refs start with "ca/" or "kek/"), for the reconciler
	// (pkg/reconcile); a destroyed key is not listed.
	ListKeys(ctx context.Context) ([]Listed, error)
	// Check reports whether custody works now, with a real round trip (an
	// error wrapping ErrUnavailable when it does not).
	Check(ctx context.Context) error
}
