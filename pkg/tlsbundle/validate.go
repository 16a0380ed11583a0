package tlsbundle

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"
)

// Input limits.
const (
	// MaxInputBytes is the largest total size of the certificate material
	// fields (certificate, private_key, intermediates, pkcs12, ca_bundle,
	// as text) that is examined; more is refused with CodeInputTooLarge.
	MaxInputBytes = 1 << 20
	// MaxIntermediates is the largest number of intermediate certificates
	// (including extra certificates after the leaf in certificate, and
	// those inside a PKCS#12 bundle).
	MaxIntermediates = 16
	// MaxCABundle is the largest number of certificates in ca_bundle.
	MaxCABundle = 1000
	// MinRSABits is the RSA key size below which CodeWeakKey is warned.
	MinRSABits = 2048
)

// Input is the raw material of one validation request; it is also the
// JSON body of POST /v1/tls/validate. Passphrase is a secret: Input's
// String and LogValue never show it, nor the key material.
type Input struct {
	// Certificate is the leaf as PEM or base64 DER. Certificates after the
	// first are taken as intermediates.
	Certificate string `json:"certificate,omitempty"`
	// PrivateKey is the leaf's key: PEM (PKCS#1, SEC1, PKCS#8, encrypted
	// PKCS#8, legacy encrypted PEM) or base64 DER.
	PrivateKey string `json:"private_key,omitempty"`
	// Intermediates are concatenated PEM certificates in any order, PEM
	// PKCS#7, or base64 DER (certificates or PKCS#7).
	Intermediates string `json:"intermediates,omitempty"`
	// Passphrase decrypts PrivateKey or PKCS12.
	Passphrase string `json:"passphrase,omitempty"`
	// PKCS12 is a base64 PKCS#12 bundle (key, leaf and chain); it replaces
	// Certificate and PrivateKey.
	PKCS12 string `json:"pkcs12,omitempty"`
	// ContainerRef names a stored container (Barbican) to load the other
	// fields from; see ContainerLoader.
	ContainerRef string `json:"container_ref,omitempty"`
	// Hostname, when set, must be covered by the leaf.
	Hostname string `json:"hostname,omitempty"`
	// CABundle is PEM of the roots to trust; when set the chain must
	// verify to one of them.
	CABundle string `json:"ca_bundle,omitempty"`
}

// String describes which fields are set, never their values.
func (in Input) String() string {
	var set []string
	for _, f := range []struct {
		name string
		v    string
	}{
		{FieldCertificate, in.Certificate}, {FieldPrivateKey, in.PrivateKey},
		{FieldIntermediates, in.Intermediates}, {FieldPassphrase, in.Passphrase},
		{FieldPKCS12, in.PKCS12}, {FieldContainerRef, in.ContainerRef},
		{FieldHostname, in.Hostname}, {FieldCABundle, in.CABundle},
	} {
		if f.v != "" {
			set = append(set, f.name)
		}
	}
	return "tlsbundle.Input{" + strings.Join(set, ",") + "}"
}

// GoString is String, so that %#v does not print secrets either.
func (in Input) GoString() string { return in.String() }

// LogValue implements slog.LogValuer without secrets.
func (in Input) LogValue() slog.Value { return slog.StringValue(in.String()) }

func (in Input) materialSize() int {
	return len(in.Certificate) + len(in.PrivateKey) + len(in.Intermediates) + len(in.PKCS12) + len(in.CABundle)
}

// Issue is one reason a bundle is invalid (an error) or questionable (a
// warning).
type Issue struct {
	// Code is one of the Code constants.
	Code string `json:"code"`
	// Field is the request field concerned (see the Field constants).
	Field string `json:"field,omitempty"`
	// Message explains the issue to a person; it never contains key
	// material or the passphrase.
	Message string `json:"message"`
}

// CertInfo describes the leaf certificate.
type CertInfo struct {
	Subject           string    `json:"subject"`
	Issuer            string    `json:"issuer"`
	Serial            string    `json:"serial"`
	NotBefore         time.Time `json:"not_before"`
	NotAfter          time.Time `json:"not_after"`
	DNSNames          []string  `json:"dns_names"`
	IPAddresses       []string  `json:"ip_addresses"`
	KeyAlgorithm      string    `json:"key_algorithm"`
	FingerprintSHA256 string    `json:"fingerprint_sha256"`
}

// HostNames are the names a load balancer serves the certificate for
// (Octavia's SNI host names: the CN and the DNS SANs).
type HostNames struct {
	CN       string   `json:"cn"`
	DNSNames []string `json:"dns_names"`
}

// ChainCert is one certificate of the ordered chain.
type ChainCert struct {
	Subject           string    `json:"subject"`
	Issuer            string    `json:"issuer"`
	Serial            string    `json:"serial"`
	NotAfter          time.Time `json:"not_after"`
	FingerprintSHA256 string    `json:"fingerprint_sha256"`
	// Trusted is set on the root from ca_bundle that anchors the chain.
	Trusted bool `json:"trusted,omitempty"`
}

// Report is the result of a validation; it is also the response body.
type Report struct {
	// Valid is true when Errors is empty.
	Valid bool `json:"valid"`
	// Errors lists every reason the bundle is invalid, never only the first.
	Errors []Issue `json:"errors"`
	// Warnings never make the bundle invalid.
	Warnings []Issue `json:"warnings"`
	// Certificate describes the leaf; null when it could not be read.
	Certificate *CertInfo `json:"certificate"`
	// HostNames are the leaf's CN and DNS SANs; null without a leaf.
	HostNames *HostNames `json:"host_names"`
	// Chain is the leaf followed by its issuers in order, ending with the
	// trusted root when ca_bundle anchors it.
	Chain []ChainCert `json:"chain"`
	// ChainPEM is the leaf and its intermediates in order, as PEM, ready to
	// serve (no self-signed root); empty without a leaf.
	ChainPEM string `json:"chain_pem"`
}

// Has reports whether the report has an error or warning with code.
func (r *Report) Has(code string) bool {
	return slices.ContainsFunc(r.Errors, func(i Issue) bool { return i.Code == code }) ||
		slices.ContainsFunc(r.Warnings, func(i Issue) bool { return i.Code == code })
}

// Codes returns the codes of the errors and of the warnings, in order.
func (r *Report) Codes() (errs, warns []string) {
	errs, warns = []string{}, []string{}
	for _, i := range r.Errors {
		errs = append(errs, i.Code)
	}
	for _, i := range r.Warnings {
		warns = append(warns, i.Code)
	}
	return errs, warns
}

func (r *Report) errorf(code, field, format string, args ...any) {
	r.Errors = append(r.Errors, Issue{Code: code, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (r *Report) warnf(code, field, format string, args ...any) {
	r.Warnings = append(r.Warnings, Issue{Code: code, Field: field, Message: fmt.Sprintf(format, args...)})
}

// keyIssue reports a key or PKCS#12 parse error: its own code, or fallback
// for an error that carries none.
func (r *Report) keyIssue(field, fallback string, err error) {
	code := KeyErrorCode(err)
	msg := err.Error()
	var ke *keyError
	if errors.As(err, &ke) {
		msg = ke.msg
	}
	if code == "" {
		code = fallback
	}
	if code == CodeBadPassphrase {
		field = FieldPassphrase // the passphrase is the thing to fix
	}
	r.Errors = append(r.Errors, Issue{Code: code, Field: field, Message: msg})
}

// chainLink is a certificate of the built chain.
type chainLink struct {
	cert    *x509.Certificate
	input   int    // index in the intermediates, -1 for the leaf or a root from ca_bundle
	field   string // request field it came from
	trusted bool   // root taken from ca_bundle
}

// Validate checks a TLS bundle and reports every error and warning. It is
// pure: no I/O, the clock is now. ContainerRef is not resolved here (see
// Validator); an Input with one is reported as CodeContainerRefUnsupported.
func Validate(_ context.Context, in Input, now time.Time) Report {
	return validate(in, now, caches{})
}

// caches are a Validator's memories, shared by its requests: nil fields
// mean none. Validate and a Validator give the same report for the same
// input and time.
type caches struct {
	paths *pathCache // successful path validations
	certs *certCache // parsed certificates
}

// validate is Validate with the Validator's caches.
func validate(in Input, now time.Time, cc caches) (r Report) {
	r = Report{Errors: []Issue{}, Warnings: []Issue{}, Chain: []ChainCert{}}
	defer func() { r.Valid = len(r.Errors) == 0 }()

	if in.materialSize() > MaxInputBytes {
		r.errorf(CodeInputTooLarge, "", "certificate material is %d bytes, above the limit of %d", in.materialSize(), MaxInputBytes)
		return r
	}
	if in.ContainerRef != "" {
		r.errorf(CodeContainerRefUnsupported, FieldContainerRef, "container_ref cannot be resolved: no container store is configured")
		return r
	}
	if in.PKCS12 != "" && (in.Certificate != "" || in.PrivateKey != "") {
		r.errorf(CodeConflictingInputs, FieldPKCS12, "give either pkcs12 or certificate and private_key, not both")
		return r
	}

	var (
		leaf      *x509.Certificate
		key       crypto.PrivateKey
		inters    []certEntry
		tooMany   bool
		interSeen = map[string]bool{}
	)
	addInter := func(c *x509.Certificate, field string) {
		fp := string(c.Raw)
		if interSeen[fp] || (leaf != nil && leaf.Equal(c)) {
			return // a repeat, or the leaf repeated among the intermediates
		}
		if len(inters) >= MaxIntermediates {
			tooMany = true
			return
		}
		interSeen[fp] = true
		inters = append(inters, certEntry{cert: c, index: len(inters), field: field})
	}

	// The leaf and key.
	switch {
	case in.PKCS12 != "":
		der, ok := decodeBase64([]byte(in.PKCS12))
		if !ok {
			r.errorf(CodePKCS12Unreadable, FieldPKCS12, "pkcs12 is not base64")
			break
		}
		p, err := parsePKCS12(der, in.Passphrase)
		if err != nil {
			r.keyIssue(FieldPKCS12, CodePKCS12Unreadable, err)
			break
		}
		leaf, key = p.leaf, p.key
		if leaf == nil {
			r.errorf(CodePKCS12Unreadable, FieldPKCS12, "the PKCS#12 bundle holds no certificate for its key")
		} else if err := checkCertKey(leaf); err != nil {
			r.errorf(CodeCertificateUnreadable, FieldPKCS12, "%v", err)
			leaf = nil
		}
		for i, c := range p.chain {
			if err := checkCertKey(c); err != nil {
				r.errorf(CodeIntermediateUnreadable, FieldPKCS12, "PKCS#12 certificate %d: %v", i, err)
				continue
			}
			addInter(c, FieldPKCS12)
		}
	case in.Certificate == "":
		r.errorf(CodeCertificateMissing, FieldCertificate, "no certificate (or pkcs12) was given")
	default:
		var extra []*x509.Certificate
		var bad []string
		err := readCertificates([]byte(in.Certificate), MaxIntermediates+1, cc.certs,
			func(c *x509.Certificate, i int) {
				if leaf == nil {
					leaf = c
				} else {
					extra = append(extra, c)
				}
			},
			func(i int, err error) { bad = append(bad, err.Error()) })
		switch {
		case errors.Is(err, errTooMany):
			tooMany = true
		case len(bad) > 0:
			r.errorf(CodeCertificateUnreadable, FieldCertificate, "certificate does not parse: %s", strings.Join(bad, "; "))
		case leaf == nil:
			r.errorf(CodeCertificateUnreadable, FieldCertificate, "no certificate found")
		}
		if len(bad) > 0 {
			leaf = nil // the first good one may not be the leaf meant
		}
		for _, c := range extra {
			addInter(c, FieldCertificate)
		}
	}
	if in.PKCS12 == "" {
		if in.PrivateKey == "" {
			r.errorf(CodeKeyMissing, FieldPrivateKey, "no private key was given")
		} else {
			pk, err := parsePrivateKey([]byte(in.PrivateKey), in.Passphrase)
			if err != nil {
				r.keyIssue(FieldPrivateKey, CodeKeyUnreadable, err)
			} else {
				key = pk.key
				if pk.legacy {
					r.warnf(CodeLegacyKeyEncryption, FieldPrivateKey,
						"the key uses legacy OpenSSL PEM encryption (MD5, no iterations); convert it with openssl pkcs8 -topk8 -v2 aes-256-cbc")
				}
			}
		}
	}

	// Intermediates, numbered in the order given.
	if in.Intermediates != "" {
		err := readCertificates([]byte(in.Intermediates), MaxIntermediates+1, cc.certs,
			func(c *x509.Certificate, i int) { addInter(c, interField(i)) },
			func(i int, err error) {
				r.errorf(CodeIntermediateUnreadable, interField(i), "%v", err)
			})
		if errors.Is(err, errTooMany) {
			tooMany = true
		}
	}
	if tooMany {
		r.errorf(CodeTooManyIntermediates, FieldIntermediates, "more than %d intermediate certificates were given", MaxIntermediates)
	}

	var roots []*x509.Certificate
	if in.CABundle != "" {
		var bad []string
		err := readCertificates([]byte(in.CABundle), MaxCABundle, cc.certs,
			func(c *x509.Certificate, _ int) { roots = append(roots, c) },
			func(i int, err error) { bad = append(bad, fmt.Sprintf("entry %d: %v", i, err)) })
		switch {
		case err != nil:
			r.errorf(CodeCABundleUnreadable, FieldCABundle, "ca_bundle holds more than %d certificates", MaxCABundle)
		case len(bad) > 0:
			r.errorf(CodeCABundleUnreadable, FieldCABundle, "ca_bundle does not parse: %s", strings.Join(bad, "; "))
		case len(roots) == 0:
			r.errorf(CodeCABundleUnreadable, FieldCABundle, "ca_bundle holds no certificate")
		}
	}
	if in.Hostname != "" && !validHostname(in.Hostname) {
		r.errorf(CodeHostnameInvalid, FieldHostname, "hostname %q is not a DNS name or IP address", truncate(in.Hostname, 80))
	}

	if leaf == nil {
		return r
	}
	leafText := cc.certs.text(leaf)
	r.Certificate = certInfo(leaf, leafText)
	r.HostNames = &HostNames{CN: leaf.Subject.CommonName, DNSNames: nonNil(leaf.DNSNames)}

	// The leaf on its own.
	if now.After(leaf.NotAfter) {
		r.errorf(CodeCertificateExpired, FieldCertificate, "the certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		r.errorf(CodeCertificateNotYetValid, FieldCertificate, "the certificate is valid only from %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if leaf.BasicConstraintsValid && leaf.IsCA {
		r.errorf(CodeLeafIsCA, FieldCertificate, "the certificate is a CA certificate (%s), not a server certificate", leaf.Subject)
	}
	if leaf.Subject.CommonName == "" && len(leaf.DNSNames) == 0 {
		r.errorf(CodeMissingSubject, FieldCertificate, "the certificate has neither a common name nor a DNS subject alternative name")
	}
	if in.Hostname != "" && validHostname(in.Hostname) {
		if err := leaf.VerifyHostname(in.Hostname); err != nil {
			r.errorf(CodeHostnameMismatch, FieldHostname, "the certificate does not cover %q (it covers %s)", in.Hostname, coveredNames(leaf))
		}
	}
	if key != nil {
		pub := publicKey(key)
		eq, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		if pub == nil || !ok || !eq.Equal(pub) {
			r.errorf(CodeKeyMismatch, FieldPrivateKey, "the private key (%s) is not the key of the certificate (%s)",
				keyAlgorithm(pub), keyAlgorithm(leaf.PublicKey))
		}
	}

	// The chain. anchor is the ca_bundle root when anchoredChain has
	// already proved, with the one x509 path validation verifyPath would
	// run, the chain buildChain would build (it then checks no signature
	// twice); nil means the chain is built and checked the long way.
	links, anchor := anchorChain(leaf, inters, roots, now, cc.paths)
	if anchor == nil {
		links = buildChain(leaf, inters)
	}
	used := map[int]bool{}
	var order []int
	for _, l := range links[1:] {
		used[l.input] = true
		order = append(order, l.input)
	}
	if !slices.IsSorted(order) {
		r.warnf(CodeIntermediatesOutOfOrder, FieldIntermediates, "the intermediates were not given in chain order; chain and chain_pem are returned in order")
	}
	for _, e := range inters {
		if !used[e.index] {
			r.warnf(CodeUnusedIntermediate, e.field, "%s is not part of the certificate's chain; it is left out of chain_pem", e.cert.Subject)
		}
	}
	last := links[len(links)-1].cert
	if len(links) > 1 && selfSigned(last) {
		r.warnf(CodeRootInIntermediates, links[len(links)-1].field, "%s is a self-signed root; clients must already trust it, so it is left out of chain_pem", last.Subject)
	}
	for _, l := range links[1:] {
		c := l.cert
		if now.After(c.NotAfter) {
			r.errorf(CodeIntermediateExpired, l.field, "%s expired at %s", c.Subject, c.NotAfter.UTC().Format(time.RFC3339))
		}
		if now.Before(c.NotBefore) {
			r.errorf(CodeIntermediateNotYetValid, l.field, "%s is valid only from %s", c.Subject, c.NotBefore.UTC().Format(time.RFC3339))
		}
	}

	if len(roots) > 0 {
		switch {
		case anchor != nil:
			// Path validation passed in anchoredChain: what verifyPath
			// would have said is nothing.
			links = append(links, chainLink{cert: anchor, input: -1, field: FieldCABundle, trusted: true})
		case selfSigned(last):
			if !containsCert(roots, last) {
				r.errorf(CodeUntrustedRoot, FieldCABundle, "the chain ends at the root %s, which is not in ca_bundle", last.Subject)
			} else {
				links[len(links)-1].trusted = true
			}
		default:
			if root := findIssuer(last, roots); root != nil {
				links = append(links, chainLink{cert: root, input: -1, field: FieldCABundle, trusted: true})
			} else if len(links) == 1 && containsCert(roots, leaf) {
				// The leaf itself is pinned as trusted; leaf_is_ca or nothing to say.
				links[0].trusted = true
			} else {
				// Without the issuer's certificate nobody can tell a missing
				// intermediate from a root ca_bundle lacks; untrusted_root is
				// said only of a chain that ends at a root it carries.
				r.errorf(CodeChainIncomplete, FieldIntermediates, "no intermediate or ca_bundle root issued %s: its issuer %q is missing (an intermediate not given, or a root ca_bundle does not hold)",
					last.Subject, last.Issuer.String())
			}
		}
		if top := links[len(links)-1]; top.input == -1 {
			// The root came from ca_bundle, past the loop above: its
			// validity is a reason too (x509's Expired, which verifyPath
			// leaves to these checks, would otherwise say nothing).
			if now.After(top.cert.NotAfter) {
				r.errorf(CodeIntermediateExpired, FieldCABundle, "the root %s expired at %s", top.cert.Subject, top.cert.NotAfter.UTC().Format(time.RFC3339))
			}
			if now.Before(top.cert.NotBefore) {
				r.errorf(CodeIntermediateNotYetValid, FieldCABundle, "the root %s is valid only from %s", top.cert.Subject, top.cert.NotBefore.UTC().Format(time.RFC3339))
			}
		}
		if top := links[len(links)-1]; top.trusted && anchor == nil {
			verifyPath(&r, leaf, links, roots, now)
		}
	}

	// Per-certificate warnings over the whole chain.
	for _, l := range links {
		field := l.field
		if pk, ok := l.cert.PublicKey.(*rsa.PublicKey); ok && pk.N.BitLen() < MinRSABits {
			r.warnf(CodeWeakKey, field, "%s has a %d-bit RSA key (at least %d is expected)", l.cert.Subject, pk.N.BitLen(), MinRSABits)
		}
		if isSHA1(l.cert.SignatureAlgorithm) && !selfSigned(l.cert) {
			r.warnf(CodeSHA1Signature, field, "%s is signed with %s", l.cert.Subject, l.cert.SignatureAlgorithm)
		}
	}

	var pemOut strings.Builder
	r.Chain = make([]ChainCert, 0, len(links))
	for _, l := range links {
		t := leafText // links[0] is the leaf: not described twice
		if l.cert != leaf {
			t = cc.certs.text(l.cert)
		}
		r.Chain = append(r.Chain, chainCert(l.cert, t, l.trusted))
		if l.cert != leaf && (l.trusted || selfSigned(l.cert)) {
			continue
		}
		if t.pem != "" {
			pemOut.WriteString(t.pem)
		} else {
			_ = pem.Encode(&pemOut, &pem.Block{Type: "CERTIFICATE", Bytes: l.cert.Raw})
		}
	}
	r.ChainPEM = pemOut.String()
	return r
}

// verifyPath runs the x509 path validation (name constraints, path
// length, key usage) on a chain already known to link to a trusted root,
// reporting what the link checks have not already reported.
func verifyPath(r *Report, leaf *x509.Certificate, links []chainLink, roots []*x509.Certificate, now time.Time) {
	_, err := verifyChain(leaf, pathOptions(links, roots, now))
	if err == nil {
		return
	}
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && (inv.Reason == x509.Expired || inv.Reason == x509.NotAuthorizedToSign) {
		return // already reported as expired / leaf_is_ca-like linkage
	}
	var ia x509.InsecureAlgorithmError
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ia) || errors.As(err, &ua) && slices.ContainsFunc(links, func(l chainLink) bool { return isSHA1(l.cert.SignatureAlgorithm) }) {
		// The links verified, so an unknown authority here comes from the
		// SHA-1 signature x509 refuses: reported as the sha1_signature warning.
		return
	}
	r.errorf(CodeChainInvalid, FieldIntermediates, "the chain does not validate: %v", err)
}

// verifyChain is the x509 path validation; tests count its calls.
var verifyChain = (*x509.Certificate).Verify

// anchorChain is anchoredChain; tests replace it to compare with the long
// way.
var anchorChain = anchoredChain

// anchoredChain is the common case of a valid bundle, checked with half
// the signature verifications of buildChain, findIssuer and verifyPath,
// which each verify the same signatures. It picks, as buildChain and
// findIssuer would, the first unused intermediate (then ca_bundle root)
// whose subject is the issuer of the certificate before it, but without
// checking signatures, and then runs verifyPath's own x509 path validation
// (the same roots, the chain's intermediates, the same time). When that
// succeeds with a chain made of exactly these certificates, every
// signature buildChain and findIssuer would check is valid, so they would
// have picked the same ones, and verifyPath would report nothing: it
// returns the chain (without the root) and the root. Otherwise (a
// self-issued certificate on the way, no root by name, any validation
// error, another chain) it returns nil and the caller takes the long way,
// so that every report is what it was.
//
// paths, when not nil, remembers the path validations that succeeded, and
// one of the same certificates, each as valid at now as it was then, is
// not run again (see pathCache).
func anchoredChain(leaf *x509.Certificate, inters []certEntry, roots []*x509.Certificate, now time.Time, paths *pathCache) ([]chainLink, *x509.Certificate) {
	if len(roots) == 0 {
		return nil, nil
	}
	links := []chainLink{{cert: leaf, input: -1, field: FieldCertificate}}
	used := make([]bool, len(inters))
	cur := leaf
	for {
		if bytes.Equal(cur.RawSubject, cur.RawIssuer) {
			return nil, nil // selfSigned would check a signature: the long way
		}
		if len(links) > len(inters) {
			break
		}
		found := -1
		for i, e := range inters {
			if !used[i] && bytes.Equal(e.cert.RawSubject, cur.RawIssuer) {
				found = i
				break
			}
		}
		if found < 0 {
			break
		}
		used[found] = true
		links = append(links, chainLink{cert: inters[found].cert, input: inters[found].index, field: inters[found].field})
		cur = inters[found].cert
	}
	var root *x509.Certificate
	for _, r := range roots {
		if bytes.Equal(r.RawSubject, cur.RawIssuer) {
			root = r
			break
		}
	}
	if root == nil {
		return nil, nil
	}
	var key [sha256.Size]byte
	if paths != nil {
		key = pathKey(leaf, links, roots, now)
		if paths.has(key) {
			return links, root
		}
	}
	chains, err := verifyChain(leaf, pathOptions(links, roots, now))
	if err != nil {
		return nil, nil
	}
	for _, ch := range chains {
		if len(ch) != len(links)+1 || ch[len(ch)-1] != root {
			continue
		}
		same := true
		for i, l := range links {
			same = same && ch[i] == l.cert
		}
		if same {
			paths.add(key)
			return links, root
		}
	}
	return nil, nil
}

// pathOptions are the options of the x509 path validation of a chain
// (links, the leaf first) to roots at now: the roots and the chain's
// untrusted certificates as intermediates, any extended key usage.
func pathOptions(links []chainLink, roots []*x509.Certificate, now time.Time) x509.VerifyOptions {
	rootPool := x509.NewCertPool()
	for _, c := range roots {
		rootPool.AddCert(c)
	}
	inter := x509.NewCertPool()
	for _, l := range links[1:] {
		if !l.trusted {
			inter.AddCert(l.cert)
		}
	}
	return x509.VerifyOptions{
		Roots: rootPool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
}

// buildChain links the leaf to its issuers among the intermediates by
// subject/issuer name and signature, in order, without reusing any.
func buildChain(leaf *x509.Certificate, inters []certEntry) []chainLink {
	links := []chainLink{{cert: leaf, input: -1, field: FieldCertificate}}
	used := make([]bool, len(inters))
	cur := leaf
	for len(links) <= len(inters) && !selfSigned(cur) {
		found := -1
		for i, e := range inters {
			if used[i] || !bytes.Equal(e.cert.RawSubject, cur.RawIssuer) {
				continue
			}
			// The raw signature check: CA flags and key usage are
			// x509 path validation's concern (verifyPath).
			if e.cert.CheckSignature(cur.SignatureAlgorithm, cur.RawTBSCertificate, cur.Signature) == nil {
				found = i
				break
			}
		}
		if found < 0 {
			break
		}
		used[found] = true
		links = append(links, chainLink{cert: inters[found].cert, input: inters[found].index, field: inters[found].field})
		cur = inters[found].cert
	}
	return links
}

// findIssuer returns the root that issued c, if any.
func findIssuer(c *x509.Certificate, roots []*x509.Certificate) *x509.Certificate {
	for _, root := range roots {
		if bytes.Equal(root.RawSubject, c.RawIssuer) &&
			root.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil {
			return root
		}
	}
	return nil
}

func containsCert(set []*x509.Certificate, c *x509.Certificate) bool {
	for _, s := range set {
		if s.Equal(c) || (bytes.Equal(s.RawSubject, c.RawSubject) && bytes.Equal(s.RawSubjectPublicKeyInfo, c.RawSubjectPublicKeyInfo)) {
			return true
		}
	}
	return false
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) &&
		c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

func isSHA1(a x509.SignatureAlgorithm) bool {
	return a == x509.SHA1WithRSA || a == x509.ECDSAWithSHA1 || a == x509.DSAWithSHA1
}

func interField(i int) string {
	return fmt.Sprintf("%s[%d]", FieldIntermediates, i)
}

func validHostname(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	h = strings.TrimSuffix(h, ".")
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if len(label) == 0 || len(label) > 63 {
			return false
		}
		for i, c := range label {
			ok := c == '-' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c == '*' && i == 0 && len(label) == 1)
			if !ok {
				return false
			}
		}
	}
	return true
}

func coveredNames(c *x509.Certificate) string {
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		if c.Subject.CommonName == "" {
			return "no names"
		}
		return fmt.Sprintf("only the common name %q, which clients ignore without SANs", c.Subject.CommonName)
	}
	return strings.Join(names, ", ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// nonNil is a copy of s, empty rather than nil: a report never shares a
// slice with a certificate, which a Validator's cache shares between
// requests.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

func serial(c *x509.Certificate) string {
	if c.SerialNumber == nil {
		return ""
	}
	return hex.EncodeToString(c.SerialNumber.Bytes())
}

// certText is what a report shows of a certificate as text.
type certText struct {
	subject, issuer, serial, fingerprint string
	pem                                  string // for chain_pem; "" when not kept
}

func describe(c *x509.Certificate) certText {
	return certText{subject: c.Subject.String(), issuer: c.Issuer.String(), serial: serial(c), fingerprint: fingerprint(c)}
}

func certInfo(c *x509.Certificate, t certText) *CertInfo {
	ips := []string{}
	for _, ip := range c.IPAddresses {
		ips = append(ips, ip.String())
	}
	return &CertInfo{
		Subject: t.subject, Issuer: t.issuer, Serial: t.serial,
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		DNSNames: nonNil(c.DNSNames), IPAddresses: ips,
		KeyAlgorithm: keyAlgorithm(c.PublicKey), FingerprintSHA256: t.fingerprint,
	}
}

func chainCert(c *x509.Certificate, t certText, trusted bool) ChainCert {
	return ChainCert{
		Subject: t.subject, Issuer: t.issuer, Serial: t.serial,
		NotAfter: c.NotAfter.UTC(), FingerprintSHA256: t.fingerprint, Trusted: trusted,
	}
}

// keyAlgorithm names a public key like the rest of the API
// ("rsa-2048", "ecdsa-p256", "ed25519").
func keyAlgorithm(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ecdsa-" + strings.ToLower(strings.ReplaceAll(k.Curve.Params().Name, "-", ""))
	case ed25519.PublicKey:
		return "ed25519"
	case nil:
		return "unknown"
	}
	return fmt.Sprintf("%T", pub)
}
