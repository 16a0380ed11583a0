package keywrap

import (
	"context"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// Store is the part of the metadata store the wrap/unwrap function uses.
// pkg/store/sqlite implements it.
type Store interface {
	// CreateKEK stores a new KEK and its first version in one transaction;
	// an existing name fails with an error wrapping api.ErrConflict.
	CreateKEK(ctx context.Context, k store.KEK, first store.KEKVersion) error
	// KEK returns the named KEK (api.ErrNotFound when absent).
	KEK(ctx context.Context, name string) (store.KEK, error)
	// KEKVersions returns every version of the named KEK.
	KEKVersions(ctx context.Context, name string) ([]store.KEKVersion, error)
	// KEKVersion returns one version (api.ErrNotFound when absent).
	KEKVersion(ctx context.Context, name string, version int) (store.KEKVersion, error)
	// RotateKEK atomically checks that the active version is expected (else
	// api.ErrGenerationMismatch), inserts next (Version expected+1) and
	// makes it active.
	RotateKEK(ctx context.Context, name string, expected int, next store.KEKVersion) error
}

// Custody is the part of key custody the wrap/unwrap function uses: KEKs
// that never leave custody. Every keys.Custody (pkg/keys/software, pkcs11,
// barbican) satisfies it; pkg/backends checks that at compile time.
type Custody interface {
	// GenerateKEK creates a new AES-256 KEK named ref (keys.ErrConflict
	// when ref exists).
	GenerateKEK(ctx context.Context, ref string) error
	// Seal encrypts plaintext under the KEK ref, binding aad.
	Seal(ctx context.Context, ref string, plaintext, aad []byte) ([]byte, error)
	// Open decrypts what Seal returned; a ciphertext or aad that does not
	// authenticate gives an error wrapping ErrDecrypt (keys.ErrDecrypt).
	Open(ctx context.Context, ref string, ciphertext, aad []byte) ([]byte, error)
	// Destroy deletes the key named ref; a missing key is not an error.
	Destroy(ctx context.Context, ref string) error
}
