package ca

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// rawAttr is one subject attribute with its exact ASN.1 string type.
type rawAttr struct {
	oid asn1.ObjectIdentifier
	tag int // asn1.TagUTF8String, asn1.TagBMPString, …
	s   string
}

// csrWithRawSubject returns a PEM CSR whose subject is attrs, one RDN each,
// encoded exactly as given (BMPString as UTF-16BE, the others as bytes).
func csrWithRawSubject(t testing.TB, attrs ...rawAttr) string {
	t.Helper()
	type atv struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue
	}
	var rdns [][]atv
	for _, a := range attrs {
		b := []byte(a.s)
		if a.tag == asn1.TagBMPString {
			b = nil
			for _, u := range utf16.Encode([]rune(a.s)) {
				b = append(b, byte(u>>8), byte(u))
			}
		}
		rdns = append(rdns, []atv{{a.oid, asn1.RawValue{Class: asn1.ClassUniversal, Tag: a.tag, Bytes: b}}})
	}
	raw, err := asn1.Marshal(rdns)
	if err != nil {
		t.Fatal(err)
	}
	// asn1.Marshal encodes a [][]T as SEQUENCE OF SEQUENCE: make each RDN
	// a SET, as X.501 wants.
	raw = setOfRDNs(t, raw)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: raw}, p256Key(t))
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// setOfRDNs rewrites the inner SEQUENCE tags of a SEQUENCE OF SEQUENCE OF
// attribute into SET tags.
func setOfRDNs(t testing.TB, der []byte) []byte {
	t.Helper()
	var outer asn1.RawValue
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		t.Fatal(err)
	}
	var inner []byte
	rest := outer.Bytes
	for len(rest) > 0 {
		var rdn asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &rdn); err != nil {
			t.Fatal(err)
		}
		b, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: rdn.Bytes})
		if err != nil {
			t.Fatal(err)
		}
		inner = append(inner, b...)
	}
	out, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: inner})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rsaKeyExponent3 returns a 2048-bit RSA key whose public exponent is 3,
// which crypto/rsa never generates.
func rsaKeyExponent3(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	e := big.NewInt(3)
	one := big.NewInt(1)
	for {
		p, err := rand.Prime(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		q, err := rand.Prime(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		pm, qm := new(big.Int).Sub(p, one), new(big.Int).Sub(q, one)
		phi := new(big.Int).Mul(pm, qm)
		d := new(big.Int).ModInverse(e, phi)
		if p.Cmp(q) == 0 || d == nil {
			continue
		}
		k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: new(big.Int).Mul(p, q), E: 3}, D: d, Primes: []*big.Int{p, q}}
		if k.N.BitLen() != 2048 {
			continue
		}
		k.Precompute()
		return k
	}
}

func TestSubjectPolicy(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	oidCN, oidO := asn1.ObjectIdentifier{2, 5, 4, 3}, asn1.ObjectIdentifier{2, 5, 4, 10}
	csr := func(cn string, orgs ...string) string { return makeCSR(t, csrOptions{cn: cn, orgs: orgs}) }
	server := func(dns ...string) SignRequest {
		return SignRequest{CSR: makeCSR(t, csrOptions{cn: "web", dns: dns}), Profile: "server"}
	}

	tests := []struct {
		name       string
		req        SignRequest
		wantStatus int // for a member; 0 = signed
		wantCode   string
		adminToo   bool // refused for an admin as well
	}{
		{"O=kubeadm:cluster-admins is refused", SignRequest{CSR: csr("alice", "kubeadm:cluster-admins")}, 403, api.CodeSubjectNotAllowed, false},
		{"CN=system:kube-controller-manager is refused", SignRequest{CSR: csr("system:kube-controller-manager")}, 403, api.CodeSubjectNotAllowed, false},
		{"CN=system:kube-scheduler is refused", SignRequest{CSR: csr("system:kube-scheduler")}, 403, api.CodeSubjectNotAllowed, false},
		{"a node identity is refused", SignRequest{CSR: csr("system:node:n1", "system:nodes")}, 403, api.CodeSubjectNotAllowed, false},
		{"O=system:nodes alone is refused", SignRequest{CSR: csr("n1", "system:nodes")}, 403, api.CodeSubjectNotAllowed, false},
		{"a service account is refused", SignRequest{CSR: csr("system:serviceaccount:kube-system:default")}, 403, api.CodeSubjectNotAllowed, false},
		{"system: in another case and with spaces is refused", SignRequest{CSR: csr(" System:Foo ")}, 403, api.CodeSubjectNotAllowed, false},
		{"an O in another case and with spaces is refused", SignRequest{CSR: csr("alice", "dev", "  KUBEADM:Cluster-Admins")}, 403, api.CodeSubjectNotAllowed, false},
		{"O=system:masters keeps its own code", SignRequest{CSR: csr("alice", "System:Masters ")}, 403, api.CodeSystemMasters, false},
		{"a BMPString system: CN is refused", SignRequest{CSR: csrWithRawSubject(t, rawAttr{oidCN, asn1.TagBMPString, "system:kube-scheduler"})}, 403, api.CodeSubjectNotAllowed, false},
		{"a TeletexString system: O is refused", SignRequest{CSR: csrWithRawSubject(t, rawAttr{oidCN, asn1.TagUTF8String, "alice"}, rawAttr{oidO, asn1.TagT61String, "system:nodes"})}, 403, api.CodeSubjectNotAllowed, false},
		{"an IA5String system: CN is refused", SignRequest{CSR: csrWithRawSubject(t, rawAttr{oidCN, asn1.TagIA5String, "system:admin"})}, 403, api.CodeSubjectNotAllowed, false},
		{"a system: CN before another CN is refused", SignRequest{CSR: csrWithRawSubject(t, rawAttr{oidCN, asn1.TagPrintableString, "system:admin"}, rawAttr{oidCN, asn1.TagUTF8String, "alice"})}, 403, api.CodeSubjectNotAllowed, false},
		{"a CN in a string type crypto/x509 cannot read is refused", SignRequest{CSR: csrWithRawSubject(t, rawAttr{oidCN, 28 /* UniversalString */, "\x00\x00\x00a"}, rawAttr{oidCN, asn1.TagUTF8String, "alice"})}, 400, api.CodeInvalidCSR, true},
		{"a newline in the CN is refused", SignRequest{CSR: csr("alice\nbob")}, 400, api.CodeSubjectNotAllowed, true},
		{"a NUL in an O is refused", SignRequest{CSR: csr("alice", "dev\x00ops")}, 400, api.CodeSubjectNotAllowed, true},
		{"DEL in the CN is refused", SignRequest{CSR: csr("alice\x7f")}, 400, api.CodeSubjectNotAllowed, true},
		{"a C1 control in the CN is refused", SignRequest{CSR: csr("alice\u0085")}, 400, api.CodeSubjectNotAllowed, true},
		{"a BMPString CN with an escape is refused", SignRequest{CSR: csrWithRawSubject(t, rawAttr{oidCN, asn1.TagBMPString, "alice\x1b[2J"})}, 400, api.CodeSubjectNotAllowed, true},
		{"*.com is refused", server("*.com"), 400, api.CodeSubjectNotAllowed, true},
		{"*.co.uk is refused", server("www.example.co.uk", "*.co.uk"), 400, api.CodeSubjectNotAllowed, true},
		{"*.COM in capitals is refused", server("*.COM"), 400, api.CodeSubjectNotAllowed, true},
		{"a wildcard under an unlisted single label is refused", server("*.local"), 400, api.CodeSubjectNotAllowed, true},
		{"*.com in a peer certificate is refused", SignRequest{CSR: makeCSR(t, csrOptions{cn: "etcd", dns: []string{"*.com"}}), Profile: "peer"}, 400, api.CodeSubjectNotAllowed, true},
		{"an RSA exponent of 3 is refused", SignRequest{CSR: makeCSR(t, csrOptions{key: rsaKeyExponent3(t), cn: "alice"})}, 400, api.CodeUnsupportedKey, true},

		{"a wildcard under a registrable domain is signed", server("*.example.com", "*.apps.example.co.uk"), 0, "", false},
		{"a wildcard under a cluster domain is signed", server("*.svc.cluster.local"), 0, "", false},
		{"a client CSR carrying *.com is signed without it", SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice", dns: []string{"*.com"}})}, 0, "", false},
		{"system: inside a name is signed", SignRequest{CSR: csr("alice", "team-system:a")}, 0, "", false},
		{"system: inside a server CN is signed", SignRequest{CSR: makeCSR(t, csrOptions{cn: "my-system:thing", dns: []string{"a.example"}}), Profile: "server"}, 0, "", false},
		{"a kubeadm group that is not cluster-admins is signed", SignRequest{CSR: csr("alice", "kubeadm:cluster-admins-readonly")}, 0, "", false},
		{"system: in an OU is signed", SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice", ous: []string{"system:ops"}})}, 0, "", false},
		{"an RSA-2048 key with exponent 65537 is signed", SignRequest{CSR: makeCSR(t, csrOptions{key: rsaKey(2048), cn: "alice"})}, 0, "", false},
		{"a BMPString CN is signed", SignRequest{CSR: csrWithRawSubject(t, rawAttr{oidCN, asn1.TagBMPString, "alice"})}, 0, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.a.Sign(as(member), "c1", tt.req)
			if status, code := codeOf(err); status != tt.wantStatus || code != tt.wantCode {
				t.Fatalf("member: Sign = %d %s (%v), want %d %s", status, code, err, tt.wantStatus, tt.wantCode)
			}
			var e *api.Error
			if tt.wantStatus != 0 && (!errors.As(err, &e) || len(e.Fields) != 1 || e.Fields[0].Field != "csr" || e.Fields[0].Code != tt.wantCode) {
				t.Fatalf("the refusal does not name the csr field with its code: %+v", e)
			}
			if tt.wantStatus == 0 {
				return
			}
			res, err := f.a.Sign(as(admin), "c1", tt.req)
			status, code := codeOf(err)
			switch {
			case tt.adminToo && (status != tt.wantStatus || code != tt.wantCode):
				t.Fatalf("admin: Sign = %d %s (%v), want %d %s", status, code, err, tt.wantStatus, tt.wantCode)
			case !tt.adminToo && err != nil:
				t.Fatalf("admin: Sign = %v, want a certificate", err)
			case !tt.adminToo && res.Certificate == "":
				t.Fatal("admin: no certificate")
			}
		})
	}
}

func TestRefusalMessagesSayWhichAttribute(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	for cn, want := range map[string]string{"system:kube-scheduler": "CN=system:kube-scheduler", "alice": "O=kubeadm:cluster-admins"} {
		var orgs []string
		if cn == "alice" {
			orgs = []string{"kubeadm:cluster-admins"}
		}
		_, err := f.a.Sign(as(member), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: cn, orgs: orgs})})
		var e *api.Error
		if !errors.As(err, &e) || len(e.Fields) != 1 || !strings.Contains(e.Fields[0].Message, want) {
			t.Errorf("refusal of %s: %+v, want a message naming %s", want, e, want)
		}
	}
}

func TestAdminPrivilegedIssueIsLoggedAndMarked(t *testing.T) {
	var logs bytes.Buffer
	f := newFixture(t, Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	f.mustCreate(t, "c1", CreateRequest{})
	key := p256Key(t)
	priv, err := f.a.Sign(as(admin), "c1", SignRequest{CSR: makeCSR(t, csrOptions{key: key, cn: "system:node:n1", orgs: []string{"system:nodes"}})})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := f.a.Sign(as(member), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice", orgs: []string{"dev"}})})
	if err != nil {
		t.Fatal(err)
	}
	adminPlain, err := f.a.Sign(as(admin), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "bob"})})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("the registry marks the privileged certificate and only it", func(t *testing.T) {
		list, err := f.a.Certificates(as(member), "c1")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{priv.Serial: true, plain.Serial: false, adminPlain.Serial: false}
		for _, c := range list.Certificates {
			if w, ok := want[c.Serial]; !ok || c.Privileged != w {
				t.Errorf("%s (%s): privileged = %v, want %v", c.Serial, c.Subject, c.Privileged, w)
			}
		}
		if len(list.Certificates) != len(want) {
			t.Errorf("%d entries, want %d", len(list.Certificates), len(want))
		}
	})
	t.Run("the log says who issued which privileged subject, at warn", func(t *testing.T) {
		var found bool
		for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
			if !strings.Contains(line, priv.Serial) {
				continue
			}
			found = true
			for _, s := range []string{`"level":"WARN"`, `"msg":"privileged certificate issued"`, `"cluster":"c1"`, `"user":"root"`, `"subject":"CN=system:node:n1,O=system:nodes"`} {
				if !strings.Contains(line, s) {
					t.Errorf("log line %s lacks %s", line, s)
				}
			}
		}
		if !found {
			t.Fatalf("no log line names serial %s:\n%s", priv.Serial, logs.String())
		}
		if strings.Contains(logs.String(), "PRIVATE KEY") {
			t.Fatal("the log holds key material")
		}
	})
}

func TestCACommonNameWithAControlCharacterIsRefused(t *testing.T) {
	f := newFixture(t, Options{})
	_, _, err := f.a.CreateCA(as(member), "c1", CreateRequest{CommonName: "cluster\r\nX-Injected: 1"})
	var e *api.Error
	if status, code := codeOf(err); status != 400 || code != api.CodeSubjectNotAllowed || !errors.As(err, &e) || e.Fields[0].Field != "common_name" {
		t.Fatalf("CreateCA = %d %s (%v), want 400 subject_not_allowed on common_name", status, code, err)
	}
}

// The privileged check applies to what crypto/x509 would put in the
// certificate, whatever RDN order the CSR uses.
func TestPrivilegedSeesEveryAttribute(t *testing.T) {
	for _, tt := range []struct {
		name  string
		names []pkix.AttributeTypeAndValue
		want  string
	}{
		{"a CN", []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: "system:x"}}, "CN"},
		{"the second O", []pkix.AttributeTypeAndValue{{Type: oidOrganization, Value: "dev"}, {Type: oidOrganization, Value: "kubeadm:cluster-admins"}}, "O"},
		{"a kubeadm:cluster-admins CN is no group", []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: "kubeadm:cluster-admins"}}, ""},
		{"nothing", []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: "alice"}}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			csr := &x509.CertificateRequest{Subject: pkix.Name{Names: tt.names}}
			if got, _ := Privileged(csr); got != tt.want {
				t.Fatalf("Privileged = %q, want %q", got, tt.want)
			}
		})
	}
}
