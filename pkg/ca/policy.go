package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// Profile is the kind of certificate a CSR asks for.
type Profile string

// The signing profiles.
const (
	// ProfileClient: clientAuth, no SANs (a user or a kubelet client).
	ProfileClient Profile = "client"
	// ProfileServer: serverAuth, SANs required.
	ProfileServer Profile = "server"
	// ProfilePeer: clientAuth and serverAuth, SANs required (etcd peers).
	ProfilePeer Profile = "peer"
)

// Limits of what a CSR may hold.
const (
	// MaxCSRBytes bounds the PEM text of a CSR.
	MaxCSRBytes = 16 << 10
	// MaxSANs bounds the DNS names plus IP addresses of a CSR.
	MaxSANs = 100
	// maxNameLen bounds the CN and each O (X.520 ub-common-name).
	maxNameLen = 64
	// maxOrganizations bounds the O attributes (Kubernetes groups).
	maxOrganizations = 16
	// minRSABits and maxRSABits bound an RSA key.
	minRSABits = 2048
	maxRSABits = 8192
	// SystemMasters is the Kubernetes group that bypasses RBAC.
	SystemMasters = "system:masters"
	// SystemPrefix begins every user and group name Kubernetes reserves for
	// its own components (system:node:*, system:kube-scheduler,
	// system:serviceaccount:*, system:nodes, …).
	SystemPrefix = "system:"
	// KubeadmClusterAdmins is the group kubeadm (1.29 and later) binds to
	// cluster-admin.
	KubeadmClusterAdmins = "kubeadm:cluster-admins"
	// rsaExponent is the only RSA public exponent accepted.
	rsaExponent = 65537
)

var (
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidCommonName       = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidOrganization     = asn1.ObjectIdentifier{2, 5, 4, 10}
)

// ParseProfile returns the profile named s, or 400 invalid_profile.
func ParseProfile(s string) (Profile, error) {
	switch p := Profile(s); p {
	case ProfileClient, ProfileServer, ProfilePeer:
		return p, nil
	}
	return "", api.Invalid(api.CodeInvalidProfile, "profile", `profile must be "client", "server" or "peer"`)
}

func csrError(code, message string) *api.Error {
	return api.Invalid(code, "csr", message)
}

// ParseCSR parses a PEM certificate signing request and applies the parts
// of the policy that depend on the CSR alone: exactly one CERTIFICATE
// REQUEST block of at most MaxCSRBytes; an RSA key of 2048 to 8192 bits, an
// ECDSA P-256 or P-384 key, or an Ed25519 key; a valid signature; no
// request to be a CA; only DNS and IP subject alternative names. Every
// refusal is a 400 *api.Error with its own stable code.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) > MaxCSRBytes {
		return nil, csrError(api.CodeInvalidCSR, fmt.Sprintf("csr exceeds %d bytes", MaxCSRBytes))
	}
	begin := bytes.Index(data, []byte("-----BEGIN"))
	if begin < 0 {
		return nil, csrError(api.CodeInvalidCSR, "csr is not PEM: no BEGIN line")
	}
	if len(bytes.TrimSpace(data[:begin])) != 0 {
		return nil, csrError(api.CodeInvalidCSR, "csr has text before its PEM block")
	}
	block, rest := pem.Decode(data[begin:])
	if block == nil {
		return nil, csrError(api.CodeInvalidCSR, "csr is not valid PEM")
	}
	if block.Type != "CERTIFICATE REQUEST" {
		return nil, csrError(api.CodeInvalidCSR, fmt.Sprintf("csr PEM block is %q, want \"CERTIFICATE REQUEST\"", truncate(block.Type, 40)))
	}
	if len(block.Headers) != 0 {
		return nil, csrError(api.CodeInvalidCSR, "csr PEM block has headers")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, csrError(api.CodeInvalidCSR, "csr must be exactly one PEM block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, csrError(api.CodeInvalidCSR, "csr is not a valid PKCS#10 request").Wrap(err)
	}
	if err := checkKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, csrError(api.CodeCSRSignature, "the csr's signature does not verify with its public key").Wrap(err)
	}
	if err := checkExtensions(csr); err != nil {
		return nil, err
	}
	if err := checkSubject(csr); err != nil {
		return nil, err
	}
	if err := checkSANs(csr); err != nil {
		return nil, err
	}
	return csr, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// checkKey applies the key policy.
func checkKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits < minRSABits {
			return csrError(api.CodeWeakKey, fmt.Sprintf("RSA key of %d bits; at least %d are required", bits, minRSABits))
		}
		if bits > maxRSABits {
			return csrError(api.CodeUnsupportedKey, fmt.Sprintf("RSA key of %d bits; at most %d are supported", bits, maxRSABits))
		}
		if k.E != rsaExponent {
			return csrError(api.CodeUnsupportedKey, fmt.Sprintf("RSA public exponent %d; only %d is supported", k.E, rsaExponent))
		}
		return nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384():
			return nil
		case elliptic.P224():
			return csrError(api.CodeWeakKey, "ECDSA P-224 is too weak; use P-256 or P-384")
		}
		return csrError(api.CodeUnsupportedKey, fmt.Sprintf("ECDSA curve %s is not supported; use P-256 or P-384", k.Curve.Params().Name))
	case ed25519.PublicKey:
		return nil
	}
	return csrError(api.CodeUnsupportedKey, fmt.Sprintf("%T keys are not supported; use RSA, ECDSA P-256/P-384 or Ed25519", pub))
}

// checkExtensions refuses a CSR that asks to be a CA, by basicConstraints
// CA:TRUE or by the keyCertSign key usage. Other requested extensions are
// ignored: the profile alone decides what the certificate carries.
func checkExtensions(csr *x509.CertificateRequest) error {
	for _, ext := range csr.Extensions {
		switch {
		case ext.Id.Equal(oidBasicConstraints):
			var bc struct {
				IsCA       bool `asn1:"optional"`
				MaxPathLen int  `asn1:"optional,default:-1"`
			}
			rest, err := asn1.Unmarshal(ext.Value, &bc)
			if err != nil || len(rest) != 0 {
				return csrError(api.CodeInvalidCSR, "the csr's basicConstraints extension request is malformed")
			}
			if bc.IsCA {
				return csrError(api.CodeCARequested, "the csr asks for a CA certificate (basicConstraints CA:TRUE); only end-entity certificates are issued")
			}
		case ext.Id.Equal(oidKeyUsage):
			var bits asn1.BitString
			rest, err := asn1.Unmarshal(ext.Value, &bits)
			if err != nil || len(rest) != 0 {
				return csrError(api.CodeInvalidCSR, "the csr's keyUsage extension request is malformed")
			}
			// keyCertSign is bit 5, cRLSign bit 6.
			if bits.At(5) == 1 || bits.At(6) == 1 {
				return csrError(api.CodeCARequested, "the csr asks for keyCertSign or cRLSign; only end-entity certificates are issued")
			}
		}
	}
	return nil
}

func checkSubject(csr *x509.CertificateRequest) error {
	s := csr.Subject
	if len(s.CommonName) > maxNameLen {
		return csrError(api.CodeInvalidCSR, fmt.Sprintf("the csr's common name exceeds %d bytes", maxNameLen))
	}
	if len(s.Organization) > maxOrganizations {
		return csrError(api.CodeInvalidCSR, fmt.Sprintf("the csr has more than %d organizations", maxOrganizations))
	}
	for _, o := range s.Organization {
		if o == "" || len(o) > maxNameLen {
			return csrError(api.CodeInvalidCSR, fmt.Sprintf("each organization of the csr must be 1 to %d bytes", maxNameLen))
		}
	}
	if s.CommonName == "" && len(csr.DNSNames) == 0 && len(csr.IPAddresses) == 0 {
		return csrError(api.CodeInvalidCSR, "the csr has neither a common name nor a subject alternative name")
	}
	names, err := subjectNames(csr)
	if err != nil {
		return err
	}
	for _, n := range names {
		if hasControl(n.value) {
			return csrError(api.CodeSubjectNotAllowed, fmt.Sprintf("the csr's %s contains a control character", n.attr))
		}
	}
	return nil
}

// subjectName is one CN or O attribute of a CSR's subject.
type subjectName struct {
	attr  string // "CN" or "O"
	value string
}

// subjectNames returns every CN and O attribute of csr's subject, in every
// RDN, whatever string type encodes it: crypto/x509 decodes UTF8String,
// PrintableString, IA5String, NumericString, TeletexString and BMPString
// into csr.Subject.Names, but keeps only the last CN in
// csr.Subject.CommonName. A CN or O in a string type it cannot decode
// (UniversalString, a constructed value, …) is refused, since no policy
// could be applied to it.
func subjectNames(csr *x509.CertificateRequest) ([]subjectName, error) {
	var out []subjectName
	for _, atv := range csr.Subject.Names {
		var attr string
		switch {
		case atv.Type.Equal(oidCommonName):
			attr = "CN"
		case atv.Type.Equal(oidOrganization):
			attr = "O"
		default:
			continue
		}
		v, ok := atv.Value.(string)
		if !ok {
			return nil, csrError(api.CodeInvalidCSR, fmt.Sprintf("the csr's %s is not in a supported string type (use UTF8String or PrintableString)", attr))
		}
		out = append(out, subjectName{attr: attr, value: v})
	}
	return out, nil
}

// hasControl reports whether s holds a C0 control, DEL or a C1 control.
func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r >= 0x7f && r <= 0x9f {
			return true
		}
	}
	return false
}

// CheckName refuses a name that goes into a certificate subject (a CA's
// common_name) when it holds a control character: 400 subject_not_allowed
// naming field.
func CheckName(field, value string) error {
	if hasControl(value) {
		return api.Invalid(api.CodeSubjectNotAllowed, field, field+" contains a control character")
	}
	return nil
}

func checkSANs(csr *x509.CertificateRequest) error {
	if len(csr.URIs) != 0 || len(csr.EmailAddresses) != 0 {
		return csrError(api.CodeInvalidCSR, "only DNS and IP subject alternative names are supported")
	}
	if n := len(csr.DNSNames) + len(csr.IPAddresses); n > MaxSANs {
		return csrError(api.CodeInvalidCSR, fmt.Sprintf("the csr has %d subject alternative names; at most %d are allowed", n, MaxSANs))
	}
	for _, d := range csr.DNSNames {
		if !validDNSName(d) {
			return csrError(api.CodeInvalidCSR, fmt.Sprintf("%q is not a valid DNS name", truncate(d, 64)))
		}
	}
	for _, ip := range csr.IPAddresses {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return csrError(api.CodeInvalidCSR, "the csr has a malformed IP address")
		}
	}
	return nil
}

// validDNSName accepts host names of letters, digits, '-' and '_' (as
// Kubernetes service names may have), with an optional leading "*." wildcard.
func validDNSName(d string) bool {
	d = strings.TrimPrefix(d, "*.")
	if d == "" || len(d) > 253 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// hasSystemMasters reports whether the CSR asks for O=system:masters, in
// any of its O attributes.
func hasSystemMasters(csr *x509.CertificateRequest) bool {
	names, _ := subjectNames(csr) // ParseCSR refused undecodable names
	return namesHaveSystemMasters(names)
}

// namesHaveSystemMasters is hasSystemMasters on the subjectNames of a CSR.
func namesHaveSystemMasters(names []subjectName) bool {
	for _, n := range names {
		if n.attr == "O" && strings.EqualFold(strings.TrimSpace(n.value), SystemMasters) {
			return true
		}
	}
	return false
}

// Privileged returns, for a CSR whose subject names an identity Kubernetes
// treats as powerful, which attribute does ("CN" or "O") and its value; ""
// otherwise. Powerful: a CN or an O that begins with "system:" (the
// control plane, nodes, service accounts, system:masters) and the O
// kubeadm:cluster-admins, compared case-insensitively after trimming
// spaces, in every CN and O attribute of the subject.
func Privileged(csr *x509.CertificateRequest) (attr, value string) {
	names, _ := subjectNames(csr) // ParseCSR refused undecodable names
	return privilegedName(names)
}

// privilegedName is Privileged on the subjectNames of a CSR.
func privilegedName(names []subjectName) (attr, value string) {
	for _, n := range names {
		v := strings.ToLower(strings.TrimSpace(n.value))
		if strings.HasPrefix(v, SystemPrefix) || n.attr == "O" && v == KubeadmClusterAdmins {
			return n.attr, n.value
		}
	}
	return "", ""
}

// CheckProfile applies the parts of the policy that depend on the profile
// and on the caller: server and peer certificates need a SAN and no
// wildcard directly under a public suffix; O=system:masters needs the admin
// role (403 system_masters_requires_admin, the code clients already
// match), and so does any other subject Privileged reports (403
// subject_not_allowed).
func CheckProfile(csr *x509.CertificateRequest, profile Profile, admin bool) error {
	names, _ := subjectNames(csr) // ParseCSR refused undecodable names
	return checkProfileNames(csr, names, profile, admin)
}

// checkProfileNames is CheckProfile with the subjectNames of csr.
func checkProfileNames(csr *x509.CertificateRequest, names []subjectName, profile Profile, admin bool) error {
	if namesHaveSystemMasters(names) && !admin {
		return &api.Error{
			Status: http.StatusForbidden, Code: api.CodeSystemMasters,
			Detail: "only an admin may obtain a certificate in group system:masters",
			Fields: []api.FieldError{{Code: api.CodeSystemMasters, Field: "csr", Message: "O=system:masters needs the admin role"}},
		}
	}
	if attr, value := privilegedName(names); attr != "" && !admin {
		msg := fmt.Sprintf("%s=%s is an identity Kubernetes treats as powerful and needs the admin role", attr, truncate(strings.TrimSpace(value), maxNameLen))
		return &api.Error{
			Status: http.StatusForbidden, Code: api.CodeSubjectNotAllowed,
			Detail: "only an admin may obtain a certificate for a system: or kubeadm:cluster-admins identity",
			Fields: []api.FieldError{{Code: api.CodeSubjectNotAllowed, Field: "csr", Message: msg}},
		}
	}
	if profile == ProfileServer || profile == ProfilePeer {
		if len(csr.DNSNames) == 0 && len(csr.IPAddresses) == 0 {
			return csrError(api.CodeMissingSAN, fmt.Sprintf("a %s certificate needs at least one DNS or IP subject alternative name in the csr", profile))
		}
		for _, d := range csr.DNSNames {
			if wildcardUnderPublicSuffix(d) {
				return csrError(api.CodeSubjectNotAllowed, fmt.Sprintf("%q is a wildcard directly under a public suffix", truncate(d, 64)))
			}
		}
	}
	return nil
}

// wildcardUnderPublicSuffix reports whether d is "*." followed by a public
// suffix of the Public Suffix List (ICANN or private section, and any
// single label the list does not know, by its "*" rule): *.com, *.co.uk,
// *.github.io, *.local.
func wildcardUnderPublicSuffix(d string) bool {
	base, ok := strings.CutPrefix(d, "*.")
	if !ok {
		return false
	}
	base = strings.ToLower(base)
	suffix, _ := publicsuffix.PublicSuffix(base)
	return suffix == base
}
