package tlsbundle

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/pbkdf2"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"math"
	"math/big"

	"golang.org/x/crypto/scrypt"
)

// Work-factor limits: inputs above them are refused with
// CodeWorkFactorTooHigh before any key derivation runs.
const (
	// MaxKDFWork is the key-derivation work one request may ask for, all
	// derivations added up (a PKCS#12 file's MAC and every encrypted bag).
	// The unit is one PBKDF2-HMAC-SHA256 iteration producing one output
	// block, about 0.8 µs of one CPU: the budget is some 0.5 s. It is
	// OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256 (600,000), so a
	// key protected as currently advised still loads; OpenSSL writes 2048
	// iterations by default, Java 10,000. See pbkdf2Work and pkcs12Work for
	// how other hashes and schemes are counted.
	MaxKDFWork = 600_000
	// MaxScryptCost bounds scrypt's N*r*p (time); OpenSSL's default
	// (N=16384, r=8, p=1) is 131072. It costs about as much time as
	// MaxKDFWork.
	MaxScryptCost = 1 << 20
	// MaxScryptMemory bounds scrypt's memory, 128*N*r bytes.
	MaxScryptMemory = 32 << 20
)

// keyError is a classified key problem: code is one of the Code constants.
type keyError struct {
	code string
	msg  string
}

func (e *keyError) Error() string { return e.code + ": " + e.msg }

func keyErr(code, format string, args ...any) *keyError {
	return &keyError{code: code, msg: fmt.Sprintf(format, args...)}
}

// parsedKey is a decoded private key and how it was stored.
type parsedKey struct {
	key    crypto.PrivateKey
	legacy bool // legacy OpenSSL PEM encryption
}

// keyPEMTypes are the PEM block types that can hold a private key.
var keyPEMTypes = map[string]bool{
	"PRIVATE KEY":           true,
	"RSA PRIVATE KEY":       true,
	"EC PRIVATE KEY":        true,
	"ENCRYPTED PRIVATE KEY": true,
}

// ParsePrivateKey decodes a private key in PEM (PKCS#1, SEC1, PKCS#8,
// encrypted PKCS#8 with PBES2, legacy OpenSSL encrypted PEM) or base64 DER
// (PKCS#8, PKCS#1, SEC1, encrypted PKCS#8). It does no I/O. The error, if
// any, has a message that never contains key material or the passphrase;
// KeyErrorCode tells which Code constant it is.
func ParsePrivateKey(data []byte, passphrase string) (crypto.PrivateKey, error) {
	pk, err := parsePrivateKey(data, passphrase)
	if err != nil {
		return nil, err
	}
	return pk.key, nil
}

// KeyErrorCode returns the result code (CodeKeyUnreadable,
// CodeNeedsPassphrase, CodeBadPassphrase, CodeUnsupportedKeyEncryption or
// CodeWorkFactorTooHigh) of an error from ParsePrivateKey, or "" if err is
// not one.
func KeyErrorCode(err error) string {
	var ke *keyError
	if errors.As(err, &ke) {
		return ke.code
	}
	return ""
}

func parsePrivateKey(data []byte, passphrase string) (*parsedKey, error) {
	rest := data
	sawPEM := false
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		sawPEM = true
		if !keyPEMTypes[block.Type] {
			continue // e.g. "EC PARAMETERS" before the key, or a certificate
		}
		//lint:ignore SA1019 legacy encrypted PEM is supported on purpose, with a warning (see doc.go)
		if x509.IsEncryptedPEMBlock(block) {
			return parseLegacyPEM(block, passphrase)
		}
		if block.Type == "ENCRYPTED PRIVATE KEY" {
			k, err := decryptPKCS8(block.Bytes, passphrase)
			if err != nil {
				return nil, err
			}
			return &parsedKey{key: k}, nil
		}
		k, err := parseKeyDER(block.Bytes)
		if err != nil {
			return nil, keyErr(CodeKeyUnreadable, "%s PEM block does not parse: %v", block.Type, err)
		}
		return &parsedKey{key: k}, nil
	}
	if sawPEM {
		return nil, keyErr(CodeKeyUnreadable, "no PRIVATE KEY PEM block found")
	}
	if bytes.Contains(data, []byte("-----BEGIN")) {
		return nil, keyErr(CodeKeyUnreadable, "truncated or malformed PEM block")
	}
	der, ok := decodeBase64(data)
	if !ok {
		return nil, keyErr(CodeKeyUnreadable, "neither PEM nor base64 DER")
	}
	if isEncryptedPKCS8(der) {
		k, err := decryptPKCS8(der, passphrase)
		if err != nil {
			return nil, err
		}
		return &parsedKey{key: k}, nil
	}
	k, err := parseKeyDER(der)
	if err != nil {
		return nil, keyErr(CodeKeyUnreadable, "DER does not parse as PKCS#8, PKCS#1 or SEC1: %v", err)
	}
	return &parsedKey{key: k}, nil
}

// maxKeyDER bounds the DER of a private key before it is parsed (parsing
// validates an RSA key, which costs more the larger it is): an 8192-bit
// RSA key is about 4.7 KiB.
const maxKeyDER = 8 << 10

// parseKeyDER reads an unencrypted PKCS#8, PKCS#1 or SEC1 key.
func parseKeyDER(der []byte) (crypto.PrivateKey, error) {
	if len(der) > maxKeyDER {
		return nil, fmt.Errorf("key DER is %d bytes, above the limit of %d (an RSA key over 8192 bits)", len(der), maxKeyDER)
	}
	// The three forms differ in the element after the version: a SEC1
	// key's is an OCTET STRING. At most one form parses, so trying SEC1
	// first for such a DER saves two failed parses and changes nothing.
	if sec1Shaped(der) {
		if k, err := x509.ParseECPrivateKey(der); err == nil {
			return k, nil
		}
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if _, ok := k.(*ecdh.PrivateKey); ok {
			return nil, errors.New("X25519 keys cannot sign a certificate")
		}
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("not a PKCS#8, PKCS#1 or SEC1 private key")
}

// sec1Shaped reports whether der starts as a SEC1 EC private key does: a
// SEQUENCE whose first element is a short INTEGER and whose second is an
// OCTET STRING (PKCS#8 has a SEQUENCE there, PKCS#1 an INTEGER).
func sec1Shaped(der []byte) bool {
	if len(der) < 2 || der[0] != 0x30 {
		return false
	}
	i := 2
	if der[1]&0x80 != 0 {
		i += int(der[1] & 0x7f)
	}
	// INTEGER version, short form, then the next element's tag.
	if len(der) < i+3 || der[i] != 0x02 || der[i+1]&0x80 != 0 {
		return false
	}
	j := i + 2 + int(der[i+1])
	return j < len(der) && der[j] == 0x04
}

func parseLegacyPEM(block *pem.Block, passphrase string) (*parsedKey, error) {
	if passphrase == "" {
		return nil, keyErr(CodeNeedsPassphrase, "the key is encrypted (legacy PEM) and no passphrase was given")
	}
	//lint:ignore SA1019 see doc.go: the caller sends both ciphertext and passphrase, so no padding oracle is exposed
	der, err := x509.DecryptPEMBlock(block, []byte(passphrase))
	if err != nil {
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, keyErr(CodeBadPassphrase, "the passphrase does not decrypt the key")
		}
		return nil, keyErr(CodeUnsupportedKeyEncryption, "legacy PEM encryption (DEK-Info) not supported: %v", err)
	}
	k, err := parseKeyDER(der)
	if err != nil {
		// Legacy PEM has no integrity check: a wrong passphrase usually
		// fails the padding check, else yields garbage that does not parse.
		return nil, keyErr(CodeBadPassphrase, "the passphrase does not decrypt the key")
	}
	return &parsedKey{key: k, legacy: true}, nil
}

// ASN.1 structures of PKCS#5 v2.1 (RFC 8018) and RFC 7914.
type encryptedPrivateKeyInfo struct {
	Algo pkix.AlgorithmIdentifier
	Data []byte
}

type pbes2Params struct {
	KDF pkix.AlgorithmIdentifier
	Enc pkix.AlgorithmIdentifier
}

type pbkdf2Params struct {
	Salt       []byte
	Iterations int
	KeyLength  int                      `asn1:"optional"`
	PRF        pkix.AlgorithmIdentifier `asn1:"optional"`
}

type scryptParams struct {
	Salt      []byte
	N         int
	R         int
	P         int
	KeyLength int `asn1:"optional"`
}

var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidScrypt     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
	oidHMACSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACSHA224 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 8}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACSHA384 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}
	oidHMACSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidSHA1       = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256     = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA224     = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}
	oidAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidDESEDE3CBC = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
	// oidPKCS5PBES1 is the arc of PBES1 (pbeWithMD5AndDES-CBC etc.).
	oidPKCS5PBES1 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5}
	// oidPKCS12PBE is the arc of PKCS#12 PBE schemes (pbeWithSHAAnd3-KeyTripleDES-CBC etc.).
	oidPKCS12PBE = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1}
)

// isEncryptedPKCS8 reports whether der looks like an EncryptedPrivateKeyInfo
// rather than a plain key.
func isEncryptedPKCS8(der []byte) bool {
	var epki encryptedPrivateKeyInfo
	rest, err := asn1.Unmarshal(der, &epki)
	return err == nil && len(rest) == 0 && len(epki.Algo.Algorithm) > 0
}

// decryptPKCS8 decrypts an EncryptedPrivateKeyInfo (PBES2 with PBKDF2 or
// scrypt, AES-CBC or 3DES-CBC) after checking the work factor.
func decryptPKCS8(der []byte, passphrase string) (crypto.PrivateKey, error) {
	var epki encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(der, &epki); err != nil || len(rest) != 0 {
		return nil, keyErr(CodeKeyUnreadable, "ENCRYPTED PRIVATE KEY is not an EncryptedPrivateKeyInfo")
	}
	if !epki.Algo.Algorithm.Equal(oidPBES2) {
		return nil, keyErr(CodeUnsupportedKeyEncryption, "key encryption %s is not supported (only PBES2; %s)",
			epki.Algo.Algorithm, pbeName(epki.Algo.Algorithm))
	}
	var params pbes2Params
	if rest, err := asn1.Unmarshal(epki.Algo.Parameters.FullBytes, &params); err != nil || len(rest) != 0 {
		return nil, keyErr(CodeKeyUnreadable, "PBES2 parameters do not parse")
	}
	newCipher, keyLen, err := pbes2Cipher(params.Enc.Algorithm)
	if err != nil {
		return nil, err
	}
	var iv []byte
	if rest, err := asn1.Unmarshal(params.Enc.Parameters.FullBytes, &iv); err != nil || len(rest) != 0 {
		return nil, keyErr(CodeKeyUnreadable, "PBES2 cipher IV does not parse")
	}
	derive, err := pbes2KDF(params.KDF, keyLen)
	if err != nil {
		return nil, err
	}
	if passphrase == "" {
		return nil, keyErr(CodeNeedsPassphrase, "the key is encrypted (PKCS#8) and no passphrase was given")
	}
	key, err := derive(passphrase)
	if err != nil {
		return nil, keyErr(CodeUnsupportedKeyEncryption, "key derivation failed: %v", err)
	}
	block, err := newCipher(key)
	if err != nil {
		return nil, keyErr(CodeKeyUnreadable, "cipher setup failed: %v", err)
	}
	bs := block.BlockSize()
	if len(iv) != bs {
		return nil, keyErr(CodeKeyUnreadable, "PBES2 IV is %d bytes, want %d", len(iv), bs)
	}
	if len(epki.Data) == 0 || len(epki.Data)%bs != 0 {
		return nil, keyErr(CodeKeyUnreadable, "encrypted key is not a whole number of cipher blocks")
	}
	plain := make([]byte, len(epki.Data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, epki.Data)
	plain, ok := unpad(plain, bs)
	if !ok {
		return nil, keyErr(CodeBadPassphrase, "the passphrase does not decrypt the key")
	}
	if len(plain) > maxKeyDER {
		return nil, keyErr(CodeKeyUnreadable, "key DER is %d bytes, above the limit of %d (an RSA key over 8192 bits)", len(plain), maxKeyDER)
	}
	k, err := x509.ParsePKCS8PrivateKey(plain)
	if err != nil {
		// The padding check passes for about 1 wrong passphrase in 256.
		return nil, keyErr(CodeBadPassphrase, "the passphrase does not decrypt the key")
	}
	if _, ok := k.(*ecdh.PrivateKey); ok {
		return nil, keyErr(CodeKeyUnreadable, "X25519 keys cannot sign a certificate")
	}
	return k, nil
}

func pbeName(oid asn1.ObjectIdentifier) string {
	switch {
	case hasPrefix(oid, oidPKCS12PBE):
		return "a PKCS#12 PBE scheme"
	case hasPrefix(oid, oidPKCS5PBES1):
		return "PBES1"
	}
	return "unknown scheme"
}

func hasPrefix(oid, prefix asn1.ObjectIdentifier) bool {
	return len(oid) > len(prefix) && oid[:len(prefix)].Equal(prefix)
}

func pbes2Cipher(oid asn1.ObjectIdentifier) (func([]byte) (cipher.Block, error), int, error) {
	switch {
	case oid.Equal(oidAES128CBC):
		return aes.NewCipher, 16, nil
	case oid.Equal(oidAES192CBC):
		return aes.NewCipher, 24, nil
	case oid.Equal(oidAES256CBC):
		return aes.NewCipher, 32, nil
	case oid.Equal(oidDESEDE3CBC):
		return des.NewTripleDESCipher, 24, nil
	}
	return nil, 0, keyErr(CodeUnsupportedKeyEncryption, "PBES2 cipher %s is not supported (AES-CBC and DES-EDE3-CBC are)", oid)
}

// pbes2KDF checks the KDF's work factor and returns the derivation.
func pbes2KDF(kdf pkix.AlgorithmIdentifier, keyLen int) (func(string) ([]byte, error), error) {
	switch {
	case kdf.Algorithm.Equal(oidPBKDF2):
		var p pbkdf2Params
		if rest, err := asn1.Unmarshal(kdf.Parameters.FullBytes, &p); err != nil || len(rest) != 0 {
			return nil, keyErr(CodeKeyUnreadable, "PBKDF2 parameters do not parse")
		}
		if p.KeyLength != 0 && p.KeyLength != keyLen {
			return nil, keyErr(CodeKeyUnreadable, "PBKDF2 key length %d does not match the cipher's %d", p.KeyLength, keyLen)
		}
		if p.Iterations < 1 {
			return nil, keyErr(CodeKeyUnreadable, "PBKDF2 iteration count %d is invalid", p.Iterations)
		}
		h, err := prfHash(p.PRF.Algorithm)
		if err != nil {
			return nil, err
		}
		if w := pbkdf2Work(p.Iterations, keyLen, p.PRF.Algorithm); w > MaxKDFWork {
			return nil, keyErr(CodeWorkFactorTooHigh, "PBKDF2 with %d iterations costs %d work units, above the budget of %d",
				p.Iterations, w, MaxKDFWork)
		}
		return func(pass string) ([]byte, error) {
			return pbkdf2.Key(h, pass, p.Salt, p.Iterations, keyLen)
		}, nil
	case kdf.Algorithm.Equal(oidScrypt):
		var p scryptParams
		if rest, err := asn1.Unmarshal(kdf.Parameters.FullBytes, &p); err != nil || len(rest) != 0 {
			return nil, keyErr(CodeKeyUnreadable, "scrypt parameters do not parse")
		}
		if p.KeyLength != 0 && p.KeyLength != keyLen {
			return nil, keyErr(CodeKeyUnreadable, "scrypt key length %d does not match the cipher's %d", p.KeyLength, keyLen)
		}
		if p.N < 2 || p.N&(p.N-1) != 0 || p.R < 1 || p.P < 1 {
			return nil, keyErr(CodeKeyUnreadable, "scrypt parameters N=%d r=%d p=%d are invalid", p.N, p.R, p.P)
		}
		cost := new(big.Int).Mul(big.NewInt(int64(p.N)), big.NewInt(int64(p.R)))
		mem := new(big.Int).Mul(cost, big.NewInt(128))
		cost.Mul(cost, big.NewInt(int64(p.P)))
		if cost.Cmp(big.NewInt(MaxScryptCost)) > 0 || mem.Cmp(big.NewInt(MaxScryptMemory)) > 0 {
			return nil, keyErr(CodeWorkFactorTooHigh, "scrypt parameters N=%d r=%d p=%d exceed the limit (N*r*p <= %d, 128*N*r <= %d bytes)",
				p.N, p.R, p.P, MaxScryptCost, MaxScryptMemory)
		}
		return func(pass string) ([]byte, error) {
			return scrypt.Key([]byte(pass), p.Salt, p.N, p.R, p.P, keyLen)
		}, nil
	}
	return nil, keyErr(CodeUnsupportedKeyEncryption, "PBES2 key derivation %s is not supported (PBKDF2 and scrypt are)", kdf.Algorithm)
}

// pbkdf2Work is the cost of a PBKDF2 derivation of keyLen bytes in
// MaxKDFWork units: iterations, times the output blocks PBKDF2 computes
// one by one (AES-256 from HMAC-SHA1 takes two 20-byte blocks), times the
// weight of the hash (SHA-1, SHA-224 and SHA-256 count 1; SHA-384 and
// SHA-512, which CPUs do not accelerate, 4: measured 3.4 times slower on a
// CPU with SHA extensions). An unknown PRF counts as the most expensive.
// The result saturates at math.MaxInt32.
func pbkdf2Work(iterations, keyLen int, prf asn1.ObjectIdentifier) int {
	hLen, weight := 32, 4
	switch {
	case len(prf) == 0, prf.Equal(oidHMACSHA1):
		hLen, weight = 20, 1
	case prf.Equal(oidHMACSHA224):
		hLen, weight = 28, 1
	case prf.Equal(oidHMACSHA256):
		hLen, weight = 32, 1
	case prf.Equal(oidHMACSHA384):
		hLen = 48
	case prf.Equal(oidHMACSHA512):
		hLen = 64
	}
	blocks := max(1, (min(keyLen, math.MaxInt32)+hLen-1)/hLen)
	return mulWork(mulWork(iterations, blocks), weight)
}

// mulWork multiplies two work figures, saturating at math.MaxInt32.
func mulWork(a, b int) int {
	a, b = max(0, min(a, math.MaxInt32)), max(0, min(b, math.MaxInt32))
	if a != 0 && b > math.MaxInt32/a {
		return math.MaxInt32
	}
	return a * b
}

func prfHash(oid asn1.ObjectIdentifier) (func() hash.Hash, error) {
	switch {
	case len(oid) == 0, oid.Equal(oidHMACSHA1):
		return sha1.New, nil
	case oid.Equal(oidHMACSHA224):
		return sha256.New224, nil
	case oid.Equal(oidHMACSHA256):
		return sha256.New, nil
	case oid.Equal(oidHMACSHA384):
		return sha512.New384, nil
	case oid.Equal(oidHMACSHA512):
		return sha512.New, nil
	}
	return nil, keyErr(CodeUnsupportedKeyEncryption, "PBKDF2 PRF %s is not supported", oid)
}

// unpad removes PKCS#7 padding.
func unpad(b []byte, bs int) ([]byte, bool) {
	if len(b) == 0 {
		return nil, false
	}
	n := int(b[len(b)-1])
	if n == 0 || n > bs || n > len(b) {
		return nil, false
	}
	for _, c := range b[len(b)-n:] {
		if int(c) != n {
			return nil, false
		}
	}
	return b[:len(b)-n], true
}

// publicKey returns the public half of a parsed private key.
func publicKey(k crypto.PrivateKey) crypto.PublicKey {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return &k.PublicKey
	case *ecdsa.PrivateKey:
		return &k.PublicKey
	case ed25519.PrivateKey:
		return k.Public()
	}
	return nil
}
