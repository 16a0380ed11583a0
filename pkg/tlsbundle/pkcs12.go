package tlsbundle

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math"

	"software.sslmate.com/src/go-pkcs12"
)

// pkcs12Result is what a PFX holds.
type pkcs12Result struct {
	key   crypto.PrivateKey
	leaf  *x509.Certificate
	chain []*x509.Certificate
}

// ParsePKCS12 decodes a DER PKCS#12 PFX (as produced by openssl pkcs12
// -export, Windows, Java keytool) into its key, leaf and other
// certificates. Before any key derivation it totals the work factor of
// every PBE, PBKDF2, scrypt and MAC parameter in the file and refuses
// (KeyErrorCode CodeWorkFactorTooHigh) a file that would take seconds.
// Decoding uses software.sslmate.com/src/go-pkcs12. It does no I/O.
func ParsePKCS12(der []byte, passphrase string) (crypto.PrivateKey, *x509.Certificate, []*x509.Certificate, error) {
	r, err := parsePKCS12(der, passphrase)
	if err != nil {
		return nil, nil, nil, err
	}
	return r.key, r.leaf, r.chain, nil
}

func parsePKCS12(der []byte, passphrase string) (*pkcs12Result, error) {
	work, err := pkcs12Work(der)
	if err != nil {
		return nil, keyErr(CodePKCS12Unreadable, "%v", err)
	}
	if passphrase == "" {
		work *= 2 // go-pkcs12 tries two encodings of the empty password
	}
	if work > MaxKDFWork {
		return nil, keyErr(CodeWorkFactorTooHigh, "PKCS#12 key derivation totals %d work units, above the budget of %d", work, MaxKDFWork)
	}
	key, leaf, chain, err := pkcs12.DecodeChain(der, passphrase)
	if err != nil {
		var ni pkcs12.NotImplementedError
		switch {
		case errors.Is(err, pkcs12.ErrIncorrectPassword) && passphrase == "":
			return nil, keyErr(CodeNeedsPassphrase, "the PKCS#12 bundle is protected by a passphrase and none was given")
		case errors.Is(err, pkcs12.ErrIncorrectPassword):
			return nil, keyErr(CodeBadPassphrase, "the passphrase does not open the PKCS#12 bundle")
		case errors.As(err, &ni):
			return nil, keyErr(CodeUnsupportedKeyEncryption, "PKCS#12 bundle uses something not supported: %s", string(ni))
		case errors.Is(err, pkcs12.ErrDecryption):
			return nil, keyErr(CodeBadPassphrase, "the passphrase does not decrypt the PKCS#12 bundle")
		}
		return nil, keyErr(CodePKCS12Unreadable, "PKCS#12 bundle does not decode: %v", err)
	}
	if _, ok := key.(crypto.Signer); !ok {
		return nil, keyErr(CodePKCS12Unreadable, "PKCS#12 private key of type %T is not supported", key)
	}
	return &pkcs12Result{key: key, leaf: leaf, chain: chain}, nil
}

// maxDERDepth bounds the recursion of the work-factor scan.
const maxDERDepth = 24

// pkcs12Work returns the total key-derivation work a PFX asks for, in
// MaxKDFWork units: its MacData's plus that of every PKCS#12 PBE, PBKDF2
// and scrypt parameter set found anywhere in it (also inside OCTET
// STRINGs, and PBMAC1's PBKDF2 in the MacData). The PKCS#12 KDF (RFC 7292
// appendix B) hashes one block per iteration, half an HMAC iteration: the
// MAC key is one such chain (half a unit per iteration, times the hash's
// weight), a PBE's key and IV up to three (3DES: 1.5 units). Integers too
// large for the budget count as math.MaxInt32.
func pkcs12Work(der []byte) (int, error) {
	var pfx struct {
		Version  int
		AuthSafe asn1.RawValue
		MacData  asn1.RawValue `asn1:"optional"`
	}
	if _, err := asn1.Unmarshal(der, &pfx); err != nil {
		return 0, fmt.Errorf("not a PKCS#12 PFX: %w", err)
	}
	total := 0
	if len(pfx.MacData.FullBytes) > 0 {
		var mac struct {
			Mac struct {
				Algo   pkix.AlgorithmIdentifier
				Digest []byte
			}
			Salt       []byte
			Iterations asn1.RawValue `asn1:"optional"`
		}
		if _, err := asn1.Unmarshal(pfx.MacData.FullBytes, &mac); err != nil {
			return 0, fmt.Errorf("PKCS#12 MacData does not parse: %w", err)
		}
		iterations := 1
		if len(mac.Iterations.FullBytes) > 0 {
			iterations = intValue(mac.Iterations)
		}
		weight := 4
		if a := mac.Mac.Algo.Algorithm; a.Equal(oidSHA1) || a.Equal(oidSHA224) || a.Equal(oidSHA256) {
			weight = 1
		}
		total = mulWork(iterations/2+iterations%2, weight)
	}
	w := 0
	scanWork(pfx.AuthSafe.FullBytes, 0, &w)
	scanWork(pfx.MacData.FullBytes, 0, &w) // PBMAC1 (RFC 9579) names a PBKDF2
	return addWork(total, w), nil
}

// addWork adds without overflowing.
func addWork(a, b int) int {
	if a > math.MaxInt32-b {
		return math.MaxInt32
	}
	return a + b
}

// intValue reads a non-negative DER INTEGER, saturating at MaxInt32.
func intValue(v asn1.RawValue) int {
	if v.Tag != asn1.TagInteger || v.Class != asn1.ClassUniversal {
		return 0
	}
	b := v.Bytes
	if len(b) == 0 || b[0]&0x80 != 0 {
		return 0
	}
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	if len(b) > 4 {
		return math.MaxInt32
	}
	n := 0
	for _, c := range b {
		n = n<<8 | int(c)
	}
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	return n
}

// scanWork walks DER and adds the iteration count of every PBE
// AlgorithmIdentifier it finds to *w.
func scanWork(der []byte, depth int, w *int) {
	if depth > maxDERDepth {
		return
	}
	for len(der) > 0 {
		var v asn1.RawValue
		rest, err := asn1.Unmarshal(der, &v)
		if err != nil {
			return
		}
		der = rest
		switch {
		case v.Class == asn1.ClassUniversal && v.Tag == asn1.TagSequence && v.IsCompound:
			if n, ok := algorithmWork(v.Bytes); ok {
				*w = addWork(*w, n)
			}
			scanWork(v.Bytes, depth+1, w)
		case v.IsCompound:
			scanWork(v.Bytes, depth+1, w)
		case v.Class == asn1.ClassUniversal && v.Tag == asn1.TagOctetString:
			// SafeContents and bag values are DER inside OCTET STRINGs.
			if len(v.Bytes) > 0 && v.Bytes[0] == 0x30 {
				scanWork(v.Bytes, depth+1, w)
			}
		}
	}
}

// algorithmWork reports the iterations of an AlgorithmIdentifier's body
// (OID followed by parameters) if it is a PKCS#12 PBE, PBKDF2 or scrypt.
func algorithmWork(body []byte) (int, bool) {
	var oid asn1.ObjectIdentifier
	rest, err := asn1.Unmarshal(body, &oid)
	if err != nil {
		return 0, false
	}
	var params asn1.RawValue
	if _, err := asn1.Unmarshal(rest, &params); err != nil || params.Tag != asn1.TagSequence {
		return 0, false
	}
	fields := splitDER(params.Bytes, 5)
	switch {
	case hasPrefix(oid, oidPKCS12PBE), hasPrefix(oid, oidPKCS5PBES1) && !oid.Equal(oidPBES2) && !oid.Equal(oidPBKDF2):
		// pkcs-12PbeParams / PBEParameter ::= SEQUENCE { salt, iterations }:
		// key and IV, up to three one-block-per-iteration chains.
		if len(fields) >= 2 {
			n := intValue(fields[1])
			return mulWork(n/2+n%2, 3), true
		}
	case oid.Equal(oidPBKDF2):
		// PBKDF2-params ::= SEQUENCE { salt, iterationCount,
		// keyLength INTEGER OPTIONAL, prf AlgorithmIdentifier DEFAULT SHA-1 }
		if len(fields) >= 2 {
			keyLen := 32 // AES-256, the longest key go-pkcs12 derives
			var prf asn1.ObjectIdentifier
			for _, f := range fields[2:] {
				switch {
				case f.Class == asn1.ClassUniversal && f.Tag == asn1.TagInteger:
					keyLen = intValue(f)
				case f.Class == asn1.ClassUniversal && f.Tag == asn1.TagSequence:
					if _, err := asn1.Unmarshal(f.Bytes, &prf); err != nil {
						prf = asn1.ObjectIdentifier{0} // unknown: counted as the most expensive
					}
				}
			}
			return pbkdf2Work(intValue(fields[1]), keyLen, prf), true
		}
	case oid.Equal(oidScrypt):
		// scrypt's cost in work units: N*r*p scaled so that MaxScryptCost
		// maps to MaxKDFWork.
		if len(fields) >= 4 {
			n, r, p := int64(intValue(fields[1])), int64(intValue(fields[2])), int64(intValue(fields[3]))
			cost := n * r * p
			if cost > int64(MaxScryptCost) || 128*n*r > int64(MaxScryptMemory) {
				return math.MaxInt32, true
			}
			return int(cost * MaxKDFWork / MaxScryptCost), true
		}
	}
	return 0, false
}

// splitDER returns up to max top-level elements of der.
func splitDER(der []byte, max int) []asn1.RawValue {
	var out []asn1.RawValue
	for len(der) > 0 && len(out) < max {
		var v asn1.RawValue
		rest, err := asn1.Unmarshal(der, &v)
		if err != nil {
			break
		}
		out = append(out, v)
		der = rest
	}
	return out
}
