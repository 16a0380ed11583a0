package ca

import (
	"bytes"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
)

// FuzzParseCSR feeds arbitrary bytes to the CSR parser and, when a CSR is
// accepted, through the profile checks and the signing template: every
// refusal must be a 400/403 *api.Error with a policy code, and every
// certificate that would be issued must satisfy the policy.
func FuzzParseCSR(f *testing.F) {
	for _, o := range []csrOptions{
		{cn: "alice", orgs: []string{"dev"}},
		{key: ed25519Key(f), cn: "e", dns: []string{"a.example"}},
		{key: rsaKey(2048), cn: "r", ips: []net.IP{net.ParseIP("10.0.0.1")}},
		{key: ecKey(f, elliptic.P384()), cn: "p", dns: []string{"*.b.example"}},
		{cn: "ca", extra: []pkix.Extension{basicConstraintsExt(f, true)}},
		{cn: "m", orgs: []string{SystemMasters}},
		{cn: "bob", orgs: []string{"team-b", "team-a", "ops"}},
		{dns: []string{"svc.example"}},
	} {
		f.Add([]byte(makeCSR(f, o)))
	}
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte("garbage"))

	caKeySigner, err := keys.GenerateSoftware(keys.ECDSAP256)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_, caCert, err := selfSign(caKeySigner, "fuzz CA", now, 1)
	if err != nil {
		f.Fatal(err)
	}
	policyCodes := []string{api.CodeInvalidCSR, api.CodeCSRSignature, api.CodeWeakKey, api.CodeUnsupportedKey,
		api.CodeCARequested, api.CodeSystemMasters, api.CodeMissingSAN}

	f.Fuzz(func(t *testing.T, data []byte) {
		refused := func(err error) {
			t.Helper()
			var e *api.Error
			if !errors.As(err, &e) || (e.Status != http.StatusBadRequest && e.Status != http.StatusForbidden) || !slices.Contains(policyCodes, e.Code) {
				t.Fatalf("refusal is not a policy *api.Error: %v", err)
			}
		}
		csr, err := ParseCSR(data)
		if err != nil {
			refused(err)
			return
		}
		if err := checkKey(csr.PublicKey); err != nil {
			t.Fatalf("accepted a CSR whose key the policy refuses: %v", err)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR whose signature does not verify: %v", err)
		}
		for _, p := range []Profile{ProfileClient, ProfileServer, ProfilePeer} {
			if err := CheckProfile(csr, p, false); err != nil {
				refused(err)
				continue
			}
			if hasSystemMasters(csr) {
				t.Fatal("system:masters passed for a member")
			}
			tmpl, subject, err := leafTemplate(csr, p, now, now.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			// The subject built once is the one Name.String and
			// x509.CreateCertificate would each build.
			if subject != tmpl.Subject.String() {
				t.Fatalf("subject %q, Subject.String() %q", subject, tmpl.Subject.String())
			}
			if raw, err := asn1.Marshal(tmpl.Subject.ToRDNSequence()); err != nil || !bytes.Equal(raw, tmpl.RawSubject) {
				t.Fatalf("RawSubject %x, the marshalled Subject %x (%v)", tmpl.RawSubject, raw, err)
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, csr.PublicKey, caKeySigner)
			if err != nil {
				t.Fatalf("cannot sign an accepted CSR: %v", err)
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatalf("issued an unparsable certificate: %v", err)
			}
			if c.IsCA || c.BasicConstraintsValid || c.KeyUsage&x509.KeyUsageCertSign != 0 {
				t.Fatal("issued a CA certificate or one with basicConstraints")
			}
			if p == ProfileClient && len(c.DNSNames)+len(c.IPAddresses) != 0 {
				t.Fatal("client certificate carries SANs")
			}
			if err := c.CheckSignatureFrom(caCert); err != nil {
				t.Fatalf("issued certificate does not verify: %v", err)
			}
		}
	})
}
