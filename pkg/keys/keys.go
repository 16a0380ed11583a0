// Package keys names what key custody backends share: the key algorithms a
// CA may use and how to generate them. The backends are subpackages
// (software, pkcs11, barbican); each implements the small interfaces the
// functions define where they use them (ca.Keys for signing keys, keywrap's
// for key-encryption keys).
//
// Key material never leaves custody in the clear: a backend hands out a
// crypto.Signer or seals and opens data, nothing else. Backend errors wrap
// api.ErrNotFound for a missing key and api.ErrUnavailable when the backend
// cannot be reached.
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
