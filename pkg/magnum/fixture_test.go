package magnum

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/fakeclock"
	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/ca"
	"github.com/clusterkeys/clusterkeys/pkg/gateway"
	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// The callers the tests use, by token.
var principals = map[string]auth.Principal{
	"member": {User: "alice", Project: "p1", Roles: []string{auth.RoleMember}},
	"reader": {User: "rita", Project: "p1", Roles: []string{auth.RoleReader}},
	"other":  {User: "bob", Project: "p2", Roles: []string{auth.RoleMember}},
}

// tokens authenticates the tokens of principals.
type tokens struct{}

func (tokens) Authenticate(_ context.Context, token string) (auth.Principal, error) {
	if p, ok := principals[token]; ok {
		return p, nil
	}
	return auth.Principal{}, errors.New("unknown token")
}

// uuid is the cluster every fixture has, named as Magnum names clusters.
const uuid = "7ae81bb3-dec3-4289-8d6c-da80bd8001ae"

// fixture is a real CA (SQLite store, software custody) on a fake clock,
// with cluster uuid of project p1, behind the real gateway serving Routes.
type fixture struct {
	ca      *ca.Authority
	clock   *fakeclock.Clock
	handler http.Handler
}

func newFixture(t testing.TB, publicURL string) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "clusterkeys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	mk := make([]byte, software.MasterKeySize)
	if _, err := rand.Read(mk); err != nil {
		t.Fatal(err)
	}
	custody, err := software.New(mk, db)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{clock: fakeclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))}
	f.ca = ca.New(db, custody, ca.Options{Now: f.clock.Now, Logger: slog.New(slog.DiscardHandler)})
	if _, _, err := f.ca.CreateCA(auth.WithPrincipal(ctx, principals["member"]), uuid, ca.CreateRequest{}); err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.Config{Auth: tokens{}}, Routes(f.ca, publicURL)...)
	if err != nil {
		t.Fatal(err)
	}
	f.handler = g
	return f
}

// do sends a request as the caller with token (none when empty); a body
// goes as JSON unless header sets a Content-Type.
func (f *fixture) do(t testing.TB, token, method, path, body string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader([]byte(body)))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	return rec
}

// object decodes a JSON object response and returns it with its sorted keys.
func object(t testing.TB, rec *httptest.ResponseRecorder) (map[string]any, []string) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("response %d is not a JSON object: %v: %s", rec.Code, err, rec.Body)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return m, keys
}

// asJSON marshals v.
func asJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// newCSR returns a PEM CSR of a fresh P-256 key for cn in orgs.
func newCSR(t testing.TB, cn string, orgs ...string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: orgs}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// certs parses every certificate of a PEM bundle.
func certs(t testing.TB, bundle string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for rest := []byte(bundle); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// verifies reports whether the leaf certificate chains to a CA of bundle
// at now.
func verifies(t testing.TB, leaf, bundle string, now time.Time) bool {
	t.Helper()
	pool := x509.NewCertPool()
	for _, c := range certs(t, bundle) {
		pool.AddCert(c)
	}
	cs := certs(t, leaf)
	if len(cs) != 1 {
		t.Fatalf("not one certificate: %q", leaf)
	}
	_, err := cs[0].Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

// magnumError returns the one error of a Magnum {"errors":[…]} body.
func magnumError(t testing.TB, rec *httptest.ResponseRecorder) api.MagnumError {
	t.Helper()
	var body struct {
		Errors []api.MagnumError `json:"errors"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 {
		t.Fatalf("not a Magnum error body: %s", rec.Body)
	}
	return body.Errors[0]
}
