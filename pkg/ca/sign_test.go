package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"io"
	"log/slog"
	"math"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

func TestSignPolicy(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	f.mustCreate(t, "short", CreateRequest{ValidityDays: 1})

	valid := makeCSR(t, csrOptions{cn: "alice"})
	tampered := func() string {
		der := makeCSRDER(t, csrOptions{cn: "alice"})
		der[len(der)-3] ^= 0x01 // inside the signature's s integer
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	}()
	certBlock := strings.Replace(valid, "CERTIFICATE REQUEST", "CERTIFICATE", 2)

	tests := []struct {
		name       string
		who        auth.Principal
		cluster    string
		req        SignRequest
		wantStatus int
		wantCode   string
	}{
		{"a P-256 client CSR is signed", member, "c1", SignRequest{CSR: valid}, 0, ""},
		{"an Ed25519 CSR is signed", member, "c1", SignRequest{CSR: makeCSR(t, csrOptions{key: ed25519Key(t), cn: "alice"})}, 0, ""},
		{"an RSA-2048 server CSR is signed", member, "c1", SignRequest{CSR: makeCSR(t, csrOptions{key: rsaKey(2048), cn: "s", dns: []string{"api.example"}}), Profile: "server"}, 0, ""},
		{"a P-384 peer CSR with an IP SAN is signed", member, "c1", SignRequest{CSR: makeCSR(t, csrOptions{key: ecKey(t, elliptic.P384()), cn: "alice", ips: []net.IP{net.ParseIP("10.0.0.5")}}), Profile: "peer"}, 0, ""},
		{"an RSA-1024 key is weak", member, "c1", SignRequest{CSR: makeCSR(t, csrOptions{key: rsaKey(1024), cn: "x"})}, 400, api.CodeWeakKey},
		{"a P-224 key is weak", member, "c1", SignRequest{CSR: makeCSR(t, csrOptions{key: ecKey(t, elliptic.P224()), cn: "x"})}, 400, api.CodeWeakKey},
		{"a P-521 key is unsupported", member, "c1", SignRequest{CSR: makeCSR(t, csrOptions{key: ecKey(t, elliptic.P521()), cn: "x"})}, 400, api.CodeUnsupportedKey},
		{"a tampered signature is refused", member, "c1", SignRequest{CSR: tampered}, 400, api.CodeCSRSignature},
		{"a CSR asking for CA:TRUE is refused", member, "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "x", extra: []pkix.Extension{basicConstraintsExt(t, true)}})}, 400, api.CodeCARequested},
		{"a CSR asking for CA:FALSE is signed", member, "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice", extra: []pkix.Extension{basicConstraintsExt(t, false)}})}, 0, ""},
		{"a CSR asking for keyCertSign is refused", member, "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "x", extra: []pkix.Extension{keyUsageExt(t, 0, 5)}})}, 400, api.CodeCARequested},
		{"system:masters from a member is refused", member, "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "x", orgs: []string{"dev", "system:masters"}})}, 403, api.CodeSystemMasters},
		{"system:masters from an admin is signed", admin, "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "x", orgs: []string{"system:masters"}})}, 0, ""},
		{"a server CSR without SAN is refused", member, "c1", SignRequest{CSR: valid, Profile: "server"}, 400, api.CodeMissingSAN},
		{"a peer CSR without SAN is refused", member, "c1", SignRequest{CSR: valid, Profile: "peer"}, 400, api.CodeMissingSAN},
		{"validity beyond the CA is refused", member, "short", SignRequest{CSR: valid, ValidityHours: 48}, 400, api.CodeValidityTooLong},
		{"validity within the CA is signed", member, "short", SignRequest{CSR: valid, ValidityHours: 12}, 0, ""},
		{"validity beyond the maximum is refused", member, "c1", SignRequest{CSR: valid, ValidityHours: 3 * 8760}, 400, api.CodeInvalidField},
		{"negative validity is refused", member, "c1", SignRequest{CSR: valid, ValidityHours: -1}, 400, api.CodeInvalidField},
		{"validity overflowing a Duration to about an hour is refused", member, "c1", SignRequest{CSR: valid, ValidityHours: 5124095577}, 400, api.CodeInvalidField},
		{"the largest validity_hours is refused", member, "c1", SignRequest{CSR: valid, ValidityHours: math.MaxInt}, 400, api.CodeInvalidField},
		{"the smallest validity_hours is refused", member, "c1", SignRequest{CSR: valid, ValidityHours: math.MinInt}, 400, api.CodeInvalidField},
		{"garbage is not a CSR", member, "c1", SignRequest{CSR: "hello"}, 400, api.CodeInvalidCSR},
		{"an empty CSR is refused", member, "c1", SignRequest{CSR: ""}, 400, api.CodeInvalidCSR},
		{"two PEM blocks are refused", member, "c1", SignRequest{CSR: valid + valid}, 400, api.CodeInvalidCSR},
		{"text before the PEM block is refused", member, "c1", SignRequest{CSR: "note\n" + valid}, 400, api.CodeInvalidCSR},
		{"a CERTIFICATE block is not a CSR", member, "c1", SignRequest{CSR: certBlock}, 400, api.CodeInvalidCSR},
		{"a corrupt PKCS#10 body is refused", member, "c1", SignRequest{CSR: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}, 400, api.CodeInvalidCSR},
		{"an oversized CSR is refused", member, "c1", SignRequest{CSR: valid + strings.Repeat(" ", MaxCSRBytes)}, 400, api.CodeInvalidCSR},
		{"a URI SAN is refused", member, "c1", SignRequest{CSR: makeCSRWithURI(t)}, 400, api.CodeInvalidCSR},
		{"a malformed DNS SAN is refused", member, "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "x", dns: []string{"bad name"}}), Profile: "server"}, 400, api.CodeInvalidCSR},
		{"an unknown profile is refused", member, "c1", SignRequest{CSR: valid, Profile: "ca"}, 400, api.CodeInvalidProfile},
		{"a reader may not sign", reader, "c1", SignRequest{CSR: valid}, 403, api.CodeForbidden},
		{"another project's member may not sign", otherMember, "c1", SignRequest{CSR: valid}, 403, api.CodeForbidden},
		{"an unknown cluster is ca_not_found", member, "nope", SignRequest{CSR: valid}, 404, api.CodeCANotFound},
		{"a malformed cluster name is refused", member, "../x", SignRequest{CSR: valid}, 400, api.CodeInvalidField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := f.a.Sign(as(tt.who), tt.cluster, tt.req)
			status, code := codeOf(err)
			if status != tt.wantStatus || code != tt.wantCode {
				t.Fatalf("Sign = %d %s (%v), want %d %s", status, code, err, tt.wantStatus, tt.wantCode)
			}
			if err != nil {
				if res.Certificate != "" {
					t.Fatal("a refused request returned a certificate")
				}
				return
			}
			if c := parseCertPEM(t, res.Certificate); c.IsCA {
				t.Fatal("issued certificate is a CA")
			}
		})
	}
}

func TestIssuedCertificateCarriesOnlyTheProfileExtensions(t *testing.T) {
	f := newFixture(t, Options{})
	ca := f.mustCreate(t, "c1", CreateRequest{})
	caCert := parseCertPEM(t, ca.Certificate)
	now := f.clock.Now()

	oids := func(c *x509.Certificate) []string {
		var s []string
		for _, e := range c.Extensions {
			s = append(s, e.Id.String())
		}
		slices.Sort(s)
		return s
	}
	const (
		ski = "2.5.29.14"
		ku  = "2.5.29.15"
		san = "2.5.29.17"
		aki = "2.5.29.35"
		eku = "2.5.29.37"
	)
	tests := []struct {
		name      string
		key       crypto.Signer
		profile   Profile
		wantOIDs  []string
		wantKU    x509.KeyUsage
		wantEKU   []x509.ExtKeyUsage
		wantSANs  bool
		wantHours time.Duration
	}{
		{"a client certificate has clientAuth and no SANs", p256Key(t), ProfileClient,
			[]string{ski, ku, aki, eku}, x509.KeyUsageDigitalSignature,
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, false, DefaultClientValidity},
		{"a server certificate has serverAuth and the SANs", p256Key(t), ProfileServer,
			[]string{ski, ku, san, aki, eku}, x509.KeyUsageDigitalSignature,
			[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, true, DefaultServerValidity},
		{"a peer certificate has both usages and the SANs", p256Key(t), ProfilePeer,
			[]string{ski, ku, san, aki, eku}, x509.KeyUsageDigitalSignature,
			[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, true, DefaultServerValidity},
		{"an RSA key also gets keyEncipherment", rsaKey(2048), ProfileClient,
			[]string{ski, ku, aki, eku}, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, false, DefaultClientValidity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := makeCSR(t, csrOptions{
				key: tt.key, cn: "node-1", orgs: []string{"system:nodes"}, ous: []string{"dropped"},
				dns: []string{"node-1.example", "*.apps.example"}, ips: []net.IP{net.ParseIP("192.0.2.7")},
				extra: []pkix.Extension{keyUsageExt(t, 0, 2, 3)},
			})
			// A node identity (O=system:nodes): only an admin may have it.
			res, err := f.a.Sign(as(admin), "c1", SignRequest{CSR: csr, Profile: string(tt.profile)})
			if err != nil {
				t.Fatal(err)
			}
			c := parseCertPEM(t, res.Certificate)
			if got := oids(c); !slices.Equal(got, tt.wantOIDs) {
				t.Errorf("extensions = %v, want %v", got, tt.wantOIDs)
			}
			if c.BasicConstraintsValid || c.IsCA || c.KeyUsage&x509.KeyUsageCertSign != 0 {
				t.Errorf("basic constraints present=%v CA=%v key usage %v, want no basicConstraints and not a CA", c.BasicConstraintsValid, c.IsCA, c.KeyUsage)
			}
			if c.KeyUsage != tt.wantKU {
				t.Errorf("key usage = %v, want %v", c.KeyUsage, tt.wantKU)
			}
			if !slices.Equal(c.ExtKeyUsage, tt.wantEKU) {
				t.Errorf("ext key usage = %v, want %v", c.ExtKeyUsage, tt.wantEKU)
			}
			if hasSANs := len(c.DNSNames)+len(c.IPAddresses) > 0; hasSANs != tt.wantSANs {
				t.Errorf("SANs = %v %v, want present=%v", c.DNSNames, c.IPAddresses, tt.wantSANs)
			}
			if tt.wantSANs && (!slices.Equal(c.DNSNames, []string{"node-1.example", "*.apps.example"}) || !c.IPAddresses[0].Equal(net.ParseIP("192.0.2.7"))) {
				t.Errorf("SANs = %v %v, want the CSR's", c.DNSNames, c.IPAddresses)
			}
			if c.Subject.CommonName != "node-1" || !slices.Equal(c.Subject.Organization, []string{"system:nodes"}) || len(c.Subject.OrganizationalUnit) != 0 {
				t.Errorf("subject = %v, want CN and O of the CSR only", c.Subject)
			}
			if !bytes.Equal(c.AuthorityKeyId, caCert.SubjectKeyId) || len(c.SubjectKeyId) != 20 {
				t.Errorf("AKI %x (CA SKI %x), SKI %x", c.AuthorityKeyId, caCert.SubjectKeyId, c.SubjectKeyId)
			}
			if wantSKI, _ := keyID(tt.key.Public()); !bytes.Equal(c.SubjectKeyId, wantSKI) {
				t.Errorf("SKI = %x, want %x", c.SubjectKeyId, wantSKI)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 || c.SerialNumber.BitLen() < 64 {
				t.Errorf("serial %x is not a positive 128-bit random number", c.SerialNumber)
			}
			if res.Serial != hex.EncodeToString(c.SerialNumber.Bytes()) {
				t.Errorf("serial field %s, certificate %x", res.Serial, c.SerialNumber)
			}
			if !c.NotBefore.Equal(now.Add(-time.Minute)) || !c.NotAfter.Equal(now.Add(tt.wantHours)) || !res.NotAfter.Equal(c.NotAfter) {
				t.Errorf("validity %v – %v (result %v), want %v – %v", c.NotBefore, c.NotAfter, res.NotAfter, now.Add(-time.Minute), now.Add(tt.wantHours))
			}
			if res.CAGeneration != 1 || res.CACertificate != ca.Certificate {
				t.Errorf("signed by generation %d", res.CAGeneration)
			}
			if !verifies(t, res.Certificate, ca.TrustBundle, now) {
				t.Error("certificate does not verify against the CA")
			}
		})
	}
}

func TestSignRecordsTheCertificate(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	res, err := f.a.Sign(as(member), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice", orgs: []string{"dev"}})})
	if err != nil {
		t.Fatal(err)
	}
	certs := f.all(t, "c1")
	if len(certs) != 1 {
		t.Fatalf("%d certificates recorded, want 1", len(certs))
	}
	got := certs[0]
	if got.Serial != res.Serial || got.Generation != 1 || got.User != "alice" || got.Project != "p1" ||
		got.Profile != "client" || got.Subject != "CN=alice,O=dev" || !got.NotAfter.Equal(res.NotAfter) ||
		!got.IssuedAt.Equal(f.clock.Now()) || !got.RevokedAt.IsZero() {
		t.Fatalf("recorded %+v", got)
	}
}

func TestSignDefaultValidityStopsAtTheCANotAfter(t *testing.T) {
	f := newFixture(t, Options{})
	ca := f.mustCreate(t, "c1", CreateRequest{ValidityDays: 10})
	res, err := f.a.Sign(as(member), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "s", dns: []string{"s.example"}}), Profile: "server"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.NotAfter.Equal(ca.NotAfter) {
		t.Fatalf("not_after %v, want the CA's %v", res.NotAfter, ca.NotAfter)
	}
	f.clock.Advance(11 * 24 * time.Hour)
	_, err = f.a.Sign(as(member), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice"})})
	if _, code := codeOf(err); code != api.CodeValidityTooLong {
		t.Fatalf("sign with an expired CA = %v, want %s", err, api.CodeValidityTooLong)
	}
}

func TestSignReusesTheLoadedSigner(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	for range 3 {
		if _, err := f.a.Sign(as(member), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice"})}); err != nil {
			t.Fatal(err)
		}
	}
	if f.keys.signerCalls != 1 {
		t.Fatalf("custody asked %d times for the signer, want 1", f.keys.signerCalls)
	}
}

func TestSignWithoutCacheLoadsTheSignerEachTime(t *testing.T) {
	f := newFixture(t, Options{SignerCacheSize: -1})
	f.mustCreate(t, "c1", CreateRequest{})
	for range 2 {
		if _, err := f.a.Sign(as(member), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice"})}); err != nil {
			t.Fatal(err)
		}
	}
	if f.keys.signerCalls != 2 {
		t.Fatalf("custody asked %d times for the signer, want 2", f.keys.signerCalls)
	}
}

func TestSignerCacheEvictsTheLeastRecentlyUsed(t *testing.T) {
	c := newSignerCache(2)
	gen := func(cluster string) store.CAGeneration {
		return store.CAGeneration{Cluster: cluster, Generation: 1, KeyRef: cluster}
	}
	c.put(gen("a"), caKey{})
	c.put(gen("b"), caKey{})
	if _, ok := c.get(gen("a")); !ok {
		t.Fatal("a missing")
	}
	c.put(gen("c"), caKey{})
	if _, ok := c.get(gen("b")); ok {
		t.Error("b, the least recently used, was kept")
	}
	for _, ref := range []string{"a", "c"} {
		if _, ok := c.get(gen(ref)); !ok {
			t.Errorf("%s was evicted", ref)
		}
	}
	if c.len() != 2 {
		t.Errorf("len = %d, want 2", c.len())
	}
}

func TestSignRefusesACertificateWhenTheCAWasRekeyedMeanwhile(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	// A store whose RecordCertificate runs a rekey first, as a concurrent
	// instance would.
	st := &rekeyOnRecord{DB: f.st, a: f.a}
	a := New(st, f.keys, Options{Now: f.clock.Now, Logger: f.a.log})
	st.a = a
	_, err := a.Sign(as(member), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice"})})
	if status, code := codeOf(err); status != http.StatusConflict || code != api.CodeGenerationMismatch {
		t.Fatalf("Sign = %v, want 409 generation_mismatch", err)
	}
	// The record itself refused it: nothing of the retired generation
	// entered the registry.
	certs, err := f.st.Certificates(context.Background(), store.CertificateQuery{Cluster: "c1", Limit: 10})
	if err != nil || len(certs) != 0 {
		t.Fatalf("registry holds %+v, %v; want nothing", certs, err)
	}
}

// rekeyOnRecord is the real store whose first RecordCertificate runs a
// rekey first.
type rekeyOnRecord struct {
	*sqlite.DB
	a    *Authority
	done bool
}

func (s *rekeyOnRecord) RecordCertificate(ctx context.Context, c store.IssuedCertificate) error {
	if !s.done {
		s.done = true
		if _, err := s.a.Rekey(as(member), c.Cluster, RekeyRequest{}); err != nil {
			return err
		}
	}
	return s.DB.RecordCertificate(ctx, c)
}

func TestParseCSRAcceptsEveryAllowedKey(t *testing.T) {
	for name, k := range map[string]crypto.Signer{
		"P-256": p256Key(t), "P-384": ecKey(t, elliptic.P384()), "Ed25519": ed25519Key(t),
		"RSA-2048": rsaKey(2048), "RSA-3072": rsaKey(3072),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseCSR([]byte(makeCSR(t, csrOptions{key: k, cn: "x"}))); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCSRKeyIDIsKeyID checks that the key identifier read from a CSR's
// own SubjectPublicKeyInfo is the one of the key as the certificate
// encodes it, for every key a CSR may carry, and that a sign puts it in
// the certificate.
func TestCSRKeyIDIsKeyID(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	for name, k := range map[string]crypto.Signer{
		"P-256": p256Key(t), "P-384": ecKey(t, elliptic.P384()), "Ed25519": ed25519Key(t),
		"RSA-2048": rsaKey(2048), "RSA-3072": rsaKey(3072),
	} {
		t.Run(name, func(t *testing.T) {
			pemCSR := makeCSR(t, csrOptions{key: k, cn: "alice"})
			csr, err := ParseCSR([]byte(pemCSR))
			if err != nil {
				t.Fatal(err)
			}
			got, err := csrKeyID(csr)
			if err != nil {
				t.Fatal(err)
			}
			want, err := keyID(k.Public())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("csrKeyID = %x, keyID = %x", got, want)
			}
			res, err := f.a.Sign(as(member), "c1", SignRequest{CSR: pemCSR})
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode([]byte(res.Certificate))
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(cert.SubjectKeyId, want) {
				t.Fatalf("certificate SKI %x, want %x", cert.SubjectKeyId, want)
			}
		})
	}
	// A SubjectPublicKeyInfo it cannot read falls back to the parsed key.
	csr, err := ParseCSR([]byte(makeCSR(t, csrOptions{cn: "x"})))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := keyID(csr.PublicKey)
	csr.RawSubjectPublicKeyInfo = []byte{0x30, 0x00}
	if got, err := csrKeyID(csr); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("csrKeyID of an unreadable SPKI = %x, %v; want %x", got, err, want)
	}
}

func TestRandomSerialsAre128BitAndDiffer(t *testing.T) {
	seen := map[string]bool{}
	topBit := false
	// Each serial has the top bit set with probability 1/2: 200 without
	// it happen with probability 2^-200.
	for range 200 {
		s, err := randomSerial()
		if err != nil {
			t.Fatal(err)
		}
		if s.Sign() <= 0 || s.BitLen() > 128 {
			t.Fatalf("serial %x out of range", s)
		}
		topBit = topBit || s.BitLen() == 128
		if seen[s.String()] {
			t.Fatal("serial repeated")
		}
		seen[s.String()] = true
	}
	if !topBit {
		t.Error("no serial uses bit 127: serials are not 128-bit")
	}
}

func TestLargestSerialIsIssuedIn17Octets(t *testing.T) {
	caKey := p256Key(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_, caCert, err := selfSign(caKey, "serial CA", now, 1)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR([]byte(makeCSR(t, csrOptions{cn: "alice"})))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, _, err := leafTemplate(csr, ProfileClient, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	largest := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))
	tmpl.SerialNumber = largest
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, csr.PublicKey, caKey)
	if err != nil {
		t.Fatalf("a 128-bit serial is not encodable: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if c.SerialNumber.Cmp(largest) != 0 {
		t.Errorf("serial %x, want %x", c.SerialNumber, largest)
	}
	// INTEGER tag, length 17, a leading zero octet then the 16 of the serial.
	want := append([]byte{0x02, 17, 0x00}, largest.Bytes()...)
	if !bytes.Contains(c.RawTBSCertificate, want) {
		t.Error("serial is not a 17-octet DER INTEGER")
	}
}

func TestFingerprintIsTheSHA256OfTheCertificate(t *testing.T) {
	f := newFixture(t, Options{})
	ca := f.mustCreate(t, "c1", CreateRequest{})
	sum := sha256.Sum256(parseCertPEM(t, ca.Certificate).Raw)
	if ca.FingerprintSHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("fingerprint %s", ca.FingerprintSHA256)
	}
}

func TestCertPEMMatchesEncodingPEM(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 47, 48, 49, 95, 96, 97, 300, 511, 1024} {
		der := make([]byte, n)
		for i := range der {
			der[i] = byte(i*7 + n)
		}
		want := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
		if got := certPEM(der); got != want {
			t.Errorf("%d bytes: certPEM =\n%q\nwant\n%q", n, got, want)
		}
	}
}

// TestCertificateIssuedLogLine pins the info line of a sign, text and JSON:
// the same as the variadic slog call it replaced, attribute by attribute,
// and none when info is off.
func TestCertificateIssuedLogLine(t *testing.T) {
	noTime := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	for _, tc := range []struct {
		name    string
		handler func(io.Writer, *slog.HandlerOptions) slog.Handler
	}{
		{"text", func(w io.Writer, o *slog.HandlerOptions) slog.Handler { return slog.NewTextHandler(w, o) }},
		{"json", func(w io.Writer, o *slog.HandlerOptions) slog.Handler { return slog.NewJSONHandler(w, o) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got bytes.Buffer
			f := newFixture(t, Options{Logger: slog.New(tc.handler(&got, noTime))})
			f.mustCreate(t, "c1", CreateRequest{})
			got.Reset()
			r := signClient(t, f, "c1")
			var want bytes.Buffer
			slog.New(tc.handler(&want, noTime)).Info("certificate issued", "cluster", "c1", "generation", r.CAGeneration,
				"serial", r.Serial, "profile", ProfileClient, "subject", "CN=alice", "user", member.User,
				"not_after", r.NotAfter)
			if got.String() != want.String() {
				t.Fatalf("log line\n%s\nwant\n%s", got.String(), want.String())
			}
		})
	}
	t.Run("info off", func(t *testing.T) {
		var got bytes.Buffer
		f := newFixture(t, Options{Logger: slog.New(slog.NewTextHandler(&got, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		f.mustCreate(t, "c1", CreateRequest{})
		signClient(t, f, "c1")
		if got.Len() != 0 {
			t.Fatalf("logged with info off: %s", got.String())
		}
	})
}
