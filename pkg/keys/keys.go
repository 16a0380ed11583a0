// Package keys is the contract of key custody: the Custody interface every
// backend implements, the errors it returns, the key algorithms a CA may use
// and how to generate them in memory. The backends are subpackages
// (software, pkcs11, barbican); they import this package and never the
// functions that use them. The functions define their own small interfaces
// in these terms (ca.Keys for signing keys, keywrap.Custody for
// key-encryption keys), and pkg/backends, where both sides meet, checks that
// a Custody satisfies them.
//
// Key material never leaves custody in the clear: a backend hands out a
// crypto.Signer or seals and opens data, nothing else. Backend errors wrap
// ErrNotFound for a missing key, ErrConflict for a ref in use,
// ErrUnavailable when the backend cannot be reached, ErrBackend when it
// refuses, and ErrDecrypt for a ciphertext that does not authenticate.
//
// # Adding a backend
//
// A backend is one package under pkg/keys that implements Custody (with a
// compile-time check, var _ keys.Custody = (*Custody)(nil)) and runs the
// conformance suite from its tests: keystest.Run(t, newCustody). Its init
// registers it by name (Register), which makes it a --keys value; a binary
// links it by a blank import (pkg/backends/all).
package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"time"
)

// Listed is a key that custody holds, as its listing shows it: a name,
// never key material. The reconciler (pkg/reconcile) compares listings with
// the refs the metadata store names.
type Listed struct {
	// Ref is the key's clusterkeys ref (a PKCS#11 label, a Barbican secret
	// name, a software blob's ref).
	Ref string
	// Created is when custody made the key; zero when the backend cannot
	// tell (PKCS#11 objects carry no creation time).
	Created time.Time
}

// Algorithm is a CA key algorithm, spelt as on the wire.
type Algorithm string

// The CA key algorithms of the API contract.
const (
	ECDSAP256 Algorithm = "ecdsa-p256"
	ECDSAP384 Algorithm = "ecdsa-p384"
	RSA2048   Algorithm = "rsa-2048"
	RSA3072   Algorithm = "rsa-3072"
	RSA4096   Algorithm = "rsa-4096"
)

// Algorithms lists every supported Algorithm.
var Algorithms = []Algorithm{ECDSAP256, ECDSAP384, RSA2048, RSA3072, RSA4096}

// ParseAlgorithm returns the Algorithm named s.
func ParseAlgorithm(s string) (Algorithm, error) {
	for _, a := range Algorithms {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("unknown key algorithm %q", s)
}

// GenerateSoftware creates a key of algorithm a in memory, for backends that
// keep key material themselves (software, barbican).
func GenerateSoftware(a Algorithm) (crypto.Signer, error) {
	switch a {
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("unknown key algorithm %q", a)
}
