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
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/fakeclock"
	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// fakeStore is an in-memory Store with the contract of deps.go. Hooks let
// tests run code at the critical points of a create or a rekey.
type fakeStore struct {
	mu       sync.Mutex
	clusters map[string]store.Cluster
	gens     map[string][]store.CAGeneration      // newest first
	certs    map[string][]store.IssuedCertificate // oldest first

	// beforeCreate runs before CreateCluster checks for a conflict.
	beforeCreate func()
	// rekey, when set, replaces Rekey; it may call doRekey.
	rekey func(ctx context.Context, cluster string, expected int, next store.CAGeneration, now, until time.Time) error
}

func newFakeStore() *fakeStore {
	return &fakeStore{
		clusters: map[string]store.Cluster{},
		gens:     map[string][]store.CAGeneration{},
		certs:    map[string][]store.IssuedCertificate{},
	}
}

func (s *fakeStore) CreateCluster(_ context.Context, c store.Cluster, first store.CAGeneration) error {
	if s.beforeCreate != nil {
		s.beforeCreate()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.clusters[c.Name]; ok {
		return fmt.Errorf("cluster %q: %w", c.Name, api.ErrConflict)
	}
	s.clusters[c.Name] = c
	s.gens[c.Name] = []store.CAGeneration{first}
	return nil
}

func (s *fakeStore) Cluster(_ context.Context, name string) (store.Cluster, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clusters[name]
	if !ok {
		return store.Cluster{}, fmt.Errorf("cluster %q: %w", name, api.ErrNotFound)
	}
	return c, nil
}

func (s *fakeStore) Generations(_ context.Context, cluster string) ([]store.CAGeneration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.gens[cluster]), nil
}

func (s *fakeStore) ActiveCA(_ context.Context, cluster string) (store.Cluster, store.CAGeneration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clusters[cluster]
	if !ok {
		return store.Cluster{}, store.CAGeneration{}, fmt.Errorf("cluster %q: %w", cluster, api.ErrNotFound)
	}
	for _, g := range s.gens[cluster] {
		if g.Generation == c.Generation {
			return c, g, nil
		}
	}
	return store.Cluster{}, store.CAGeneration{}, fmt.Errorf("cluster %q: active generation missing", cluster)
}

func (s *fakeStore) TrustedGenerations(_ context.Context, cluster string, active int, now time.Time) ([]store.CAGeneration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.CAGeneration
	for _, g := range s.gens[cluster] {
		if g.Generation == active || g.TrustedUntil.After(now) {
			out = append(out, g)
		}
	}
	return out, nil
}

func (s *fakeStore) Rekey(ctx context.Context, cluster string, expected int, next store.CAGeneration, now, until time.Time) error {
	if s.rekey != nil {
		return s.rekey(ctx, cluster, expected, next, now, until)
	}
	return s.doRekey(cluster, expected, next, now, until)
}

func (s *fakeStore) doRekey(cluster string, expected int, next store.CAGeneration, now, until time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clusters[cluster]
	if !ok {
		return fmt.Errorf("cluster %q: %w", cluster, api.ErrNotFound)
	}
	if c.Generation != expected || next.Generation != expected+1 {
		return fmt.Errorf("cluster %q at %d, not %d: %w", cluster, c.Generation, expected, api.ErrGenerationMismatch)
	}
	gens := s.gens[cluster]
	retired := map[int]bool{}
	for i := range gens {
		g := &gens[i]
		if g.RetiredAt.IsZero() {
			g.RetiredAt = now
			g.TrustedUntil = until
		} else if g.TrustedUntil.After(until) {
			g.TrustedUntil = until
		} else {
			continue
		}
		retired[g.Generation] = true
	}
	for i := range s.certs[cluster] {
		ic := &s.certs[cluster][i]
		if retired[ic.Generation] && (ic.RevokedAt.IsZero() || ic.RevokedAt.After(until)) {
			ic.RevokedAt = until
		}
	}
	s.gens[cluster] = append([]store.CAGeneration{next}, gens...)
	c.Generation = next.Generation
	s.clusters[cluster] = c
	return nil
}

func (s *fakeStore) RecordCertificate(_ context.Context, c store.IssuedCertificate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certs[c.Cluster] = append(s.certs[c.Cluster], c) // oldest first
	return nil
}

// SetPolicy is the minimal method of the Store contract; the policy's
// tests run against the real SQLite store (clusterpolicy_test.go).
func (s *fakeStore) SetPolicy(_ context.Context, cluster string, p store.ClusterPolicy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clusters[cluster]
	if !ok {
		return fmt.Errorf("cluster %q: %w", cluster, api.ErrNotFound)
	}
	c.Policy = p
	s.clusters[cluster] = c
	return nil
}

func (s *fakeStore) Certificates(_ context.Context, q store.CertificateQuery) ([]store.IssuedCertificate, error) {
	if q.Limit < 1 {
		return nil, fmt.Errorf("limit %d", q.Limit)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	certs := slices.Clone(s.certs[q.Cluster])
	slices.SortStableFunc(certs, func(a, b store.IssuedCertificate) int {
		if c := b.IssuedAt.Compare(a.IssuedAt); c != 0 {
			return c
		}
		return strings.Compare(b.Serial, a.Serial)
	})
	var out []store.IssuedCertificate
	for _, c := range certs {
		if len(out) == q.Limit {
			break
		}
		revoked := !c.RevokedAt.IsZero() && !c.RevokedAt.After(q.Now)
		status := store.StatusValid
		switch {
		case revoked:
			status = store.StatusRevoked
		case !c.NotAfter.After(q.Now):
			status = store.StatusExpired
		}
		k := q.After
		if (q.User != "" && c.User != q.User) || (q.Serial != "" && c.Serial != q.Serial) ||
			(q.Generation != 0 && c.Generation != q.Generation) || (q.Status != "" && status != q.Status) ||
			(k != nil && !(c.IssuedAt.Before(k.IssuedAt) || c.IssuedAt.Equal(k.IssuedAt) && c.Serial < k.Serial)) {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

// all returns every registry entry of cluster, newest first.
func (s *fakeStore) all(cluster string) []store.IssuedCertificate {
	certs, _ := s.Certificates(context.Background(), store.CertificateQuery{Cluster: cluster, Limit: 1 << 30})
	return certs
}

// fakeKeys is an in-memory Keys that records what happened to each key.
type fakeKeys struct {
	mu          sync.Mutex
	live        map[string]crypto.Signer
	destroyed   []string
	generated   []string
	signerCalls int
	// destroyErr, when set, makes Destroy fail and keep the key.
	destroyErr error
	// beforeSigner, when set, runs at the start of Signer.
	beforeSigner func(ref string)
}

func newFakeKeys() *fakeKeys { return &fakeKeys{live: map[string]crypto.Signer{}} }

func (k *fakeKeys) GenerateSigner(_ context.Context, ref string, alg keys.Algorithm) (crypto.Signer, error) {
	s, err := testCAKey(alg)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.live[ref]; ok || slices.Contains(k.destroyed, ref) {
		return nil, fmt.Errorf("key ref %q reused", ref)
	}
	k.live[ref] = s
	k.generated = append(k.generated, ref)
	return s, nil
}

func (k *fakeKeys) Signer(_ context.Context, ref string) (crypto.Signer, error) {
	if k.beforeSigner != nil {
		k.beforeSigner(ref)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.signerCalls++
	s, ok := k.live[ref]
	if !ok {
		return nil, fmt.Errorf("key %q: %w", ref, api.ErrNotFound)
	}
	return s, nil
}

func (k *fakeKeys) Destroy(_ context.Context, ref string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.destroyErr != nil {
		return k.destroyErr
	}
	delete(k.live, ref)
	k.destroyed = append(k.destroyed, ref)
	return nil
}

func (k *fakeKeys) liveRefs() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var refs []string
	for r := range k.live {
		refs = append(refs, r)
	}
	slices.Sort(refs)
	return refs
}

// testCAKey returns a CA key. RSA generation is slow, so RSA keys come
// from a small pool generated once: distinct refs may share a key, which
// the tests do not depend on except where they use ECDSA.
func testCAKey(alg keys.Algorithm) (crypto.Signer, error) {
	switch alg {
	case keys.RSA2048, keys.RSA3072, keys.RSA4096:
		return rsaKey(2048), nil
	}
	return keys.GenerateSoftware(alg)
}

var rsaKeys sync.Map // bits → *rsa.PrivateKey

// rsaKey returns an RSA key of bits, generated once per test binary.
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

type fixture struct {
	a     *Authority
	st    *fakeStore
	keys  *fakeKeys
	clock *fakeclock.Clock
}

var testStart = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newFixture(t testing.TB, opts Options) *fixture {
	t.Helper()
	f := &fixture{st: newFakeStore(), keys: newFakeKeys(), clock: fakeclock.New(testStart)}
	opts.Now = f.clock.Now
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	f.a = New(f.st, f.keys, opts)
	return f
}

var (
	member      = auth.Principal{User: "alice", Project: "p1", Roles: []string{auth.RoleMember}}
	reader      = auth.Principal{User: "rita", Project: "p1", Roles: []string{auth.RoleReader}}
	otherMember = auth.Principal{User: "bob", Project: "p2", Roles: []string{auth.RoleMember}}
	admin       = auth.Principal{User: "root", Project: "admin", Roles: []string{auth.RoleAdmin}}
)

func as(p auth.Principal) context.Context { return auth.WithPrincipal(context.Background(), p) }

// mustCreate creates cluster as member of p1.
func (f *fixture) mustCreate(t testing.TB, cluster string, req CreateRequest) Resource {
	t.Helper()
	res, created, err := f.a.CreateCA(as(member), cluster, req)
	if err != nil || !created {
		t.Fatalf("CreateCA(%s) = created %v, %v", cluster, created, err)
	}
	return res
}

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
