package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
)

// Principals, CSRs, certificates and requests for the package's tests; the
// Authority they run on is in setup_test.go.

var rsaKeys sync.Map // bits → *rsa.PrivateKey

// rsaKey returns an RSA key of bits for a CSR, generated once per test
// binary: RSA generation is slow.
func rsaKey(bits int) *rsa.PrivateKey {
	if k, ok := rsaKeys.Load(bits); ok {
		return k.(*rsa.PrivateKey)
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	actual, _ := rsaKeys.LoadOrStore(bits, k)
	return actual.(*rsa.PrivateKey)
}

var (
	member      = auth.Principal{User: "alice", Project: "p1", Roles: []string{auth.RoleMember}}
	reader      = auth.Principal{User: "rita", Project: "p1", Roles: []string{auth.RoleReader}}
	otherMember = auth.Principal{User: "bob", Project: "p2", Roles: []string{auth.RoleMember}}
	admin       = auth.Principal{User: "root", Project: "admin", Roles: []string{auth.RoleAdmin}}
)

func as(p auth.Principal) context.Context { return auth.WithPrincipal(context.Background(), p) }

// csrOptions describe a test CSR.
type csrOptions struct {
	key   crypto.Signer
	cn    string
	orgs  []string
	ous   []string
	dns   []string
	ips   []net.IP
	extra []pkix.Extension
}

// makeCSR returns a PEM CSR; the key defaults to a fresh P-256 key.
func makeCSR(t testing.TB, o csrOptions) string {
	t.Helper()
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: makeCSRDER(t, o)}))
}

func makeCSRDER(t testing.TB, o csrOptions) []byte {
	t.Helper()
	if o.key == nil {
		o.key = p256Key(t)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: o.cn, Organization: o.orgs, OrganizationalUnit: o.ous},
		DNSNames:        o.dns,
		IPAddresses:     o.ips,
		ExtraExtensions: o.extra,
	}, o.key)
	if err != nil {
		t.Fatalf("create CSR: %v", err)
	}
	return der
}

func p256Key(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	return ecKey(t, elliptic.P256())
}

func ecKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatalf("generate %s key: %v", c.Params().Name, err)
	}
	return k
}

func ed25519Key(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func basicConstraintsExt(t testing.TB, isCA bool) pkix.Extension {
	t.Helper()
	v, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{isCA})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidBasicConstraints, Critical: true, Value: v}
}

func keyUsageExt(t testing.TB, bits ...int) pkix.Extension {
	t.Helper()
	b := asn1.BitString{Bytes: make([]byte, 2), BitLength: 9}
	for _, i := range bits {
		b.Bytes[i/8] |= 0x80 >> uint(i%8)
	}
	v, err := asn1.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidKeyUsage, Critical: true, Value: v}
}

// codeOf returns the status and stable code the client would see for err.
func codeOf(err error) (int, string) {
	if err == nil {
		return 0, ""
	}
	e := api.ErrorFor(err)
	return e.Status, e.Code
}

// parseCertPEM parses one PEM certificate.
func parseCertPEM(t testing.TB, s string) *x509.Certificate {
	t.Helper()
	b, rest := pem.Decode([]byte(s))
	if b == nil || b.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("not exactly one PEM certificate: %q", s)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// poolOf returns a pool of every certificate of a PEM bundle and their count.
func poolOf(t testing.TB, bundle string) (*x509.CertPool, int) {
	t.Helper()
	pool := x509.NewCertPool()
	n := 0
	rest := []byte(bundle)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		pool.AddCert(c)
		n++
	}
	return pool, n
}

// verifies reports whether the leaf certificate chains to a CA of bundle at now.
func verifies(t testing.TB, leafPEM, bundle string, now time.Time) bool {
	t.Helper()
	pool, _ := poolOf(t, bundle)
	_, err := parseCertPEM(t, leafPEM).Verify(x509.VerifyOptions{
		Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err == nil
}

// testHandler serves routes the way the gateway does: the principal that
// who returns in the context (none when nil), the body limited, errors
// written in the route's format.
func testHandler(routes []api.Route, who func(*http.Request) *auth.Principal) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.Handle(rt.Pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p := who(r); p != nil {
				r = r.WithContext(auth.WithPrincipal(r.Context(), *p))
			}
			limit := rt.MaxBody
			if limit == 0 {
				limit = api.DefaultMaxBody
			}
			r.Body = http.MaxBytesReader(w, r.Body, limit)
			if err := rt.Handler(w, r); err != nil {
				api.WriteError(w, rt.Format, "test-request", err)
			}
		}))
	}
	return mux
}

// serve sends one request through routes as principal p (none when nil).
func serve(t testing.TB, routes []api.Route, p *auth.Principal, method, target, contentType string, body string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, bytes.NewReader([]byte(body)))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	testHandler(routes, func(*http.Request) *auth.Principal { return p }).ServeHTTP(rec, req)
	return rec
}

// decodeMap decodes a JSON object response.
func decodeMap(t testing.TB, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("response %d is not a JSON object: %v: %s", rec.Code, err, rec.Body)
	}
	return m
}

func keysOf(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// makeCSRWithURI returns a CSR with a URI SAN.
func makeCSRWithURI(t testing.TB) string {
	t.Helper()
	u, _ := url.Parse("spiffe://cluster/ns/default/sa/x")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "x"}, URIs: []*url.URL{u},
	}, p256Key(t))
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}
