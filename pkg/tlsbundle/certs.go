package tlsbundle

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
)

// certEntry is one certificate read from a field, with where it came from.
type certEntry struct {
	cert  *x509.Certificate
	index int    // position among all intermediates, in the order read
	field string // request field, e.g. "intermediates[2]"
}

// decodeBase64 decodes standard or URL base64, padded or not, ignoring
// whitespace (line breaks of pasted DER).
func decodeBase64(data []byte) ([]byte, bool) {
	s := bytes.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, data)
	if len(s) == 0 {
		return nil, false
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(string(s)); err == nil {
			return b, true
		}
	}
	return nil, false
}

// ParseCertificates reads certificates from PEM (CERTIFICATE and PKCS7
// blocks, in any order, with any text or whitespace between them) or from
// base64 DER (one or more concatenated certificates, or a PKCS#7
// SignedData). It stops with an error after max certificates (max <= 0
// means no limit). It does no I/O.
func ParseCertificates(data []byte, max int) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	var errs []error
	err := readCertificates(data, max, nil, func(c *x509.Certificate, _ int) { out = append(out, c) },
		func(_ int, err error) { errs = append(errs, err) })
	if err != nil {
		return out, err
	}
	return out, errors.Join(errs...)
}

// errTooMany is returned by readCertificates when more than max
// certificates are present.
var errTooMany = errors.New("too many certificates")

// readCertificates calls add for each certificate in data and bad for each
// part that does not parse (with the index the part would have had). It
// returns an error only when data as a whole is unusable or too large. PEM
// certificates are parsed through cache (nil: none).
func readCertificates(data []byte, max int, cache *certCache, add func(*x509.Certificate, int), bad func(int, error)) error {
	n := 0
	push := func(certs []*x509.Certificate) error {
		for _, c := range certs {
			if max > 0 && n >= max {
				return fmt.Errorf("%w: more than %d", errTooMany, max)
			}
			add(c, n)
			n++
		}
		return nil
	}
	rest := data
	sawPEM := false
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		sawPEM = true
		switch block.Type {
		case "CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE":
			der := block.Bytes
			if block.Type == "TRUSTED CERTIFICATE" {
				der = trustedCertDER(der)
			}
			c, err := cache.parse(der)
			if err != nil {
				bad(n, fmt.Errorf("PEM block %s does not parse: %w", block.Type, err))
				n++
				continue
			}
			if err := push([]*x509.Certificate{c}); err != nil {
				return err
			}
		case "PKCS7", "CMS":
			certs, err := ParsePKCS7(block.Bytes)
			if err != nil {
				bad(n, fmt.Errorf("PEM block %s: %w", block.Type, err))
				n++
				continue
			}
			if err := push(certs); err != nil {
				return err
			}
		default:
			bad(n, fmt.Errorf("PEM block of type %q is not a certificate", block.Type))
			n++
		}
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		bad(n, errors.New("truncated or malformed PEM block"))
		return nil
	}
	if sawPEM {
		return nil
	}
	der, ok := decodeBase64(data)
	if !ok {
		bad(n, errors.New("neither PEM nor base64 DER"))
		return nil
	}
	if certs, err := x509.ParseCertificates(der); err == nil && len(certs) > 0 {
		for _, c := range certs {
			if err := checkCertKey(c); err != nil {
				bad(n, err)
				return nil
			}
		}
		return push(certs)
	}
	certs, err := ParsePKCS7(der)
	if err != nil {
		bad(n, errors.New("base64 DER is neither X.509 certificates nor PKCS#7"))
		return nil
	}
	return push(certs)
}

// trustedCertDER strips OpenSSL's trust settings that follow the
// certificate in a TRUSTED CERTIFICATE block.
func trustedCertDER(der []byte) []byte {
	var raw asn1.RawValue
	if _, err := asn1.Unmarshal(der, &raw); err != nil {
		return der
	}
	return raw.FullBytes
}

// PKCS#7 (RFC 2315) structures, only as far as the certificates.
type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,optional,tag:0"`
}

type signedData struct {
	Version          int
	DigestAlgorithms asn1.RawValue
	ContentInfo      asn1.RawValue
	Certificates     asn1.RawValue `asn1:"optional,tag:0"`
	CRLs             asn1.RawValue `asn1:"optional,tag:1"`
	SignerInfos      asn1.RawValue
}

var oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}

// ParsePKCS7 returns the certificates of a DER PKCS#7 SignedData (the
// "certs-only" form that openssl crl2pkcs7 and Windows .p7b files use).
// Signatures, if any, are not checked: PKCS#7 is only a container here.
func ParsePKCS7(der []byte) ([]*x509.Certificate, error) {
	var ci contentInfo
	rest, err := asn1.Unmarshal(der, &ci)
	if err != nil {
		return nil, fmt.Errorf("PKCS#7 ContentInfo does not parse: %w", err)
	}
	if len(bytes.TrimRight(rest, "\x00")) != 0 {
		return nil, errors.New("PKCS#7: trailing data after ContentInfo")
	}
	if !ci.ContentType.Equal(oidSignedData) {
		return nil, fmt.Errorf("PKCS#7 content type %s is not SignedData", ci.ContentType)
	}
	var sd signedData
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		return nil, fmt.Errorf("PKCS#7 SignedData does not parse: %w", err)
	}
	if len(sd.Certificates.Bytes) == 0 {
		return nil, errors.New("PKCS#7 holds no certificates")
	}
	certs, err := x509.ParseCertificates(sd.Certificates.Bytes)
	if err != nil {
		return nil, fmt.Errorf("PKCS#7 certificates do not parse: %w", err)
	}
	for _, c := range certs {
		if err := checkCertKey(c); err != nil {
			return nil, err
		}
	}
	return certs, nil
}

// MaxRSABits is the largest RSA modulus accepted in a certificate, as in
// crypto/tls: a public key is just a number, and a multi-megabit one
// would make each signature check take minutes.
const MaxRSABits = 8192

// parseCertificate parses DER and refuses keys too large to check.
func parseCertificate(der []byte) (*x509.Certificate, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := checkCertKey(c); err != nil {
		return nil, err
	}
	return c, nil
}

// checkCertKey refuses an RSA key above MaxRSABits.
func checkCertKey(c *x509.Certificate) error {
	if k, ok := c.PublicKey.(*rsa.PublicKey); ok && k.N.BitLen() > MaxRSABits {
		return fmt.Errorf("%s has a %d-bit RSA key, above the limit of %d bits", c.Subject, k.N.BitLen(), MaxRSABits)
	}
	return nil
}
