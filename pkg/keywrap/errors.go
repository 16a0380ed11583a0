package keywrap

import "github.com/clusterkeys/clusterkeys/pkg/keys"

// Stable error codes of the wrap/unwrap function, in addition to pkg/api's.
const (
	// CodeDecryptFailed: the ciphertext was tampered with, was made for
	// another key, or the aad differs. One code for all of these, so that
	// the API is no oracle.
	CodeDecryptFailed = "decrypt_failed"
	// CodeUnknownKeyVersion: the ciphertext names a key version that does
	// not exist.
	CodeUnknownKeyVersion = "unknown_key_version"
	// CodePlaintextTooLarge: the plaintext exceeds the limit.
	CodePlaintextTooLarge = "plaintext_too_large"
	// CodeAADTooLarge: the aad exceeds the limit.
	CodeAADTooLarge = "aad_too_large"
	// CodeInvalidKeyName: a key name that is not allowed.
	CodeInvalidKeyName = "invalid_key_name"
)

// ErrDecrypt is custody's keys.ErrDecrypt, which a Custody's Open returns
// (wrapped) when the ciphertext does not authenticate under the key and aad
// given: tampered bytes, wrong key or wrong aad. Service methods return an
// error wrapping it (and an *api.Error with code decrypt_failed) for the
// same causes.
var ErrDecrypt = keys.ErrDecrypt
