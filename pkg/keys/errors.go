package keys

import (
	"errors"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// The errors every custody backend returns (wrapped, with what it was
// doing) for the same causes, so that callers and the conformance suite
// (keystest) test one set of values whatever the backend.
//
// ErrNotFound, ErrConflict, ErrUnavailable and ErrBackend are the values
// pkg/api maps to HTTP (404, 409, 503 with Retry-After, 502), shared rather
// than copied: the metadata store returns the same values for its blobs,
// so a backend that keeps records there (software, barbican) passes the
// store's not-found through as its own, and no table translates one into
// the other. ErrDecrypt belongs to custody alone; the wrap/unwrap function
// (pkg/keywrap) maps it to 400 decrypt_failed.
var (
	// ErrNotFound: no key has this ref (a Signer, Seal or Open of a ref
	// that was never generated or was destroyed).
	ErrNotFound = api.ErrNotFound
	// ErrConflict: a key with this ref exists already (refs are never
	// reused).
	ErrConflict = api.ErrConflict
	// ErrUnavailable: custody cannot be reached now (a token removed or
	// hung, Barbican down); the caller may retry.
	ErrUnavailable = api.ErrUnavailable
	// ErrBackend: custody answered but refused the operation (credentials
	// refused, a label carried by two keys, a key that is not the one
	// expected).
	ErrBackend = api.ErrBackend
	// ErrDecrypt: a ciphertext does not authenticate under the KEK and aad
	// given (tampered bytes, another key, another aad). One error for all
	// of these, so that custody is no oracle.
	ErrDecrypt = errors.New("decryption failed: ciphertext or aad not authentic")
)
