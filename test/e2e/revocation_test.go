package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/clusterkeys/clusterkeys/internal/need"
	"github.com/clusterkeys/clusterkeys/internal/testproc"
)

// The CRL route answers DER (application/pkix-crl) or PEM
// (application/x-pem-file): kin-openapi decodes neither on its own, so the
// contract check reads them as opaque files, as it does octet-stream.
func init() {
	openapi3filter.RegisterBodyDecoder("application/pkix-crl", openapi3filter.FileBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/x-pem-file", openapi3filter.FileBodyDecoder)
}

// revTokens is the token file of the revocation tests: several members of
// one project, so that per-user revocation has someone to spare.
var revTokens = map[string]string{
	"root":  adminToken + ",root,ops,\"admin\"",
	"alice": "rev-alice-token-0123456789,alice,team-a,\"member\"",
	"bob":   "rev-bob-token-0123456789,bob,team-a,\"member\"",
	"carol": "rev-carol-token-0123456789,carol,team-a,\"member\"",
	"dave":  "rev-dave-token-0123456789,dave,team-a,\"member\"",
	"rita":  "rev-rita-token-0123456789,rita,team-a,\"reader\"",
	"eve":   "rev-eve-token-0123456789,eve,team-b,\"member\"",
}

// tok returns the bearer token of a user of revTokens.
func tok(user string) string {
	line, ok := revTokens[user]
	if !ok {
		panic("no token for " + user)
	}
	return strings.SplitN(line, ",", 2)[0]
}

// startRevServer starts localrun with revTokens as its token file.
func startRevServer(t *testing.T, args ...string) *server {
	t.Helper()
	lines := make([]string, 0, len(revTokens))
	for _, l := range revTokens {
		lines = append(lines, l)
	}
	slices.Sort(lines)
	path := writeTokens(t, t.TempDir(), lines...)
	return startServer(t, serverOpts{args: append([]string{"--token-auth-file", path}, args...)})
}

// holder is a user's key and the certificate it was given.
type holder struct {
	user string
	key  *ecdsa.PrivateKey
	signed
}

// signAs has user sign a client certificate for CN=user with a fresh key.
func signAs(t *testing.T, s *server, cluster, user string) holder {
	t.Helper()
	k := p256(t)
	out := sign(t, s, tok(user), cluster, map[string]any{"csr": newCSR(t, k, user, []string{"developers"}), "profile": "client"})
	return holder{user: user, key: k, signed: out}
}

// revocationAnswer is the 200 answer of POST /revocations.
type revocationAnswer struct {
	Cluster      string   `json:"cluster"`
	Revoked      []string `json:"revoked"`
	Reason       string   `json:"reason"`
	User         string   `json:"user"`
	CRLNumber    int64    `json:"crl_number"`
	CAGeneration int      `json:"ca_generation"`
	Reissued     []struct {
		Serial       string `json:"serial"`
		SupersededBy string `json:"superseded_by"`
	} `json:"reissued"`
	NotReissued []string `json:"not_reissued"`
}

// revoke posts a revocation and decodes a 200 answer; other answers are
// returned as they are.
func revoke(t *testing.T, s *server, token, cluster string, body any) (revocationAnswer, response) {
	t.Helper()
	r := do(t, "POST", s.URL+"/v1/clusters/"+cluster+"/revocations", token, body)
	var a revocationAnswer
	if r.Status == http.StatusOK {
		r.json(t, &a)
	}
	return a, r
}

// mustRevoke is revoke that wants 200.
func mustRevoke(t *testing.T, s *server, token, cluster string, body any) revocationAnswer {
	t.Helper()
	a, r := revoke(t, s, token, cluster, body)
	if r.Status != http.StatusOK {
		t.Fatalf("revoke %v: %d %s", body, r.Status, r.Body)
	}
	return a
}

// registryEntry is a listing entry, and GET certificates/{serial}'s answer.
type registryEntry struct {
	Serial           string `json:"serial"`
	Subject          string `json:"subject"`
	Profile          string `json:"profile"`
	User             string `json:"requester_user"`
	Project          string `json:"requester_project"`
	CAGeneration     int    `json:"ca_generation"`
	Status           string `json:"status"`
	RevokedAt        string `json:"revoked_at"`
	NotAfter         string `json:"not_after"`
	Certificate      string `json:"certificate"`
	SupersededBy     string `json:"superseded_by"`
	RevocationReason string `json:"revocation_reason"`
	Privileged       *bool  `json:"privileged"`
}

// registry lists every entry of cluster matching query, page after page.
func registry(t *testing.T, s *server, cluster string, query url.Values) []registryEntry {
	t.Helper()
	var all []registryEntry
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	q.Set("limit", "1000")
	for {
		r := do(t, "GET", s.URL+"/v1/clusters/"+cluster+"/certificates?"+q.Encode(), adminToken, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("list %s: %d %s", q.Encode(), r.Status, r.Body)
		}
		var page struct {
			Certificates []registryEntry `json:"certificates"`
			Next         string          `json:"next"`
		}
		r.json(t, &page)
		all = append(all, page.Certificates...)
		if page.Next == "" {
			return all
		}
		q.Set("next", page.Next)
	}
}

// certBySerial is GET /v1/clusters/{c}/certificates/{serial}.
func certBySerial(t *testing.T, s *server, token, cluster, serial string) (registryEntry, response) {
	t.Helper()
	r := do(t, "GET", s.URL+"/v1/clusters/"+cluster+"/certificates/"+serial, token, nil)
	var e registryEntry
	if r.Status == http.StatusOK {
		r.json(t, &e)
	}
	return e, r
}

// userCount is one entry of GET /v1/clusters/{c}/users.
type userCount struct {
	User        string `json:"user"`
	Project     string `json:"project"`
	Valid       int    `json:"valid"`
	Revoked     int    `json:"revoked"`
	Expired     int    `json:"expired"`
	LastIssued  string `json:"last_issued"`
	UserRevoked bool   `json:"user_revoked"`
}

// users is GET /v1/clusters/{c}/users, keyed by user.
func users(t *testing.T, s *server, token, cluster string) map[string]userCount {
	t.Helper()
	r := do(t, "GET", s.URL+"/v1/clusters/"+cluster+"/users", token, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("users: %d %s", r.Status, r.Body)
	}
	var out struct {
		Cluster   string      `json:"cluster"`
		Users     []userCount `json:"users"`
		Truncated bool        `json:"truncated"`
	}
	r.json(t, &out)
	if out.Cluster != cluster || out.Truncated {
		t.Fatalf("users: %s", r.Body)
	}
	m := map[string]userCount{}
	for i, u := range out.Users {
		if i > 0 {
			prev := out.Users[i-1]
			if prev.User > u.User || (prev.User == u.User && prev.Project >= u.Project) {
				t.Errorf("users not sorted by user then project: %s", r.Body)
			}
		}
		m[u.User] = u
	}
	return m
}

// fetchCRL is GET /v1/clusters/{c}/crl[?generation=N] (gen 0: the
// default), in PEM when asPEM; it returns the raw answer and, for a 200,
// the parsed list.
func fetchCRL(t *testing.T, s *server, token, cluster string, gen int, asPEM bool) (response, *x509.RevocationList) {
	t.Helper()
	u := s.URL + "/v1/clusters/" + cluster + "/crl"
	if gen != 0 {
		u += "?generation=" + strconv.Itoa(gen)
	}
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if asPEM {
		req.Header.Set("Accept", "application/x-pem-file")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r := readResponse(t, resp)
	if r.Status != http.StatusOK {
		return r, nil
	}
	der := r.Body
	ctype := r.Header.Get("Content-Type")
	if asPEM {
		if !strings.HasPrefix(ctype, "application/x-pem-file") {
			t.Fatalf("PEM CRL with Content-Type %q", ctype)
		}
		b, _ := pem.Decode(r.Body)
		if b == nil || b.Type != "X509 CRL" {
			t.Fatalf("no X509 CRL PEM block in %q", r.Body)
		}
		der = b.Bytes
	} else if !strings.HasPrefix(ctype, "application/pkix-crl") {
		t.Fatalf("DER CRL with Content-Type %q", ctype)
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("parse the CRL: %v", err)
	}
	return r, rl
}

// serialKey normalises a hex serial (any case, colons, leading zeros) so
// that serials from the registry, the CRL and certificates compare.
func serialKey(s string) string {
	n, ok := new(big.Int).SetString(strings.ReplaceAll(s, ":", ""), 16)
	if !ok {
		return "invalid:" + s
	}
	return n.Text(16)
}

// crlSerials returns the serials a CRL lists, with their reason codes.
func crlSerials(rl *x509.RevocationList) map[string]int {
	m := map[string]int{}
	for _, e := range rl.RevokedCertificateEntries {
		m[e.SerialNumber.Text(16)] = e.ReasonCode
	}
	return m
}

// colonSerial writes a serial as openssl does: upper case, colon separated.
func colonSerial(s string) string {
	s = strings.ToUpper(s)
	if len(s)%2 == 1 {
		s = "0" + s
	}
	var parts []string
	for i := 0; i < len(s); i += 2 {
		parts = append(parts, s[i:i+2])
	}
	return strings.Join(parts, ":")
}

// writeFile writes content to dir/name and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// keyPEM writes an EC private key as PEM.
func keyPEM(t *testing.T, k *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
}

// openssl runs openssl with args and returns its combined output.
func openssl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	return string(out), err
}

// serverCSR is a CSR for a TLS server on loopback (DNS localhost, IP
// 127.0.0.1).
func serverCSR(t *testing.T, key crypto.Signer, cn string) string {
	t.Helper()
	return csrPEM(t, key, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn}, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	})
}

// TestRevocationOpenSSL: openssl verify -crl_check with the cluster's CRL
// refuses a revoked certificate and accepts the others; the CRL verifies
// under the CA generation that issued what it lists, its number grows with
// every revocation, and ?generation= serves a retired generation's CRL while
// that generation is in its grace period.
func TestRevocationOpenSSL(t *testing.T) {
	need.Tool(t, "openssl", "apt-get install openssl (or make deps)")
	s := startRevServer(t)
	const cluster = "rev-openssl"
	ca1 := createCA(t, s, tok("alice"), cluster, nil)
	dir := t.TempDir()
	ca1File := writeFile(t, dir, "ca1.pem", ca1.Certificate)
	alice, bob, carol := signAs(t, s, cluster, "alice"), signAs(t, s, cluster, "bob"), signAs(t, s, cluster, "carol")
	for _, h := range []holder{alice, bob, carol} {
		writeFile(t, dir, h.user+".crt", h.Certificate)
	}
	crlFile := filepath.Join(dir, "crl.pem")
	getCRL := func(t *testing.T, gen int) *x509.RevocationList {
		t.Helper()
		r, rl := fetchCRL(t, s, tok("rita"), cluster, gen, true)
		if rl == nil {
			t.Fatalf("CRL generation %d: %d %s", gen, r.Status, r.Body)
		}
		if rl.Number == nil {
			t.Fatalf("CRL generation %d has no CRL number", gen)
		}
		if err := os.WriteFile(crlFile, r.Body, 0o600); err != nil {
			t.Fatal(err)
		}
		if got := rl.NextUpdate.Sub(rl.ThisUpdate); got != 24*time.Hour {
			t.Errorf("nextUpdate - thisUpdate = %v, want 24h", got)
		}
		return rl
	}
	verify := func(t *testing.T, caFile, user string) (string, error) {
		t.Helper()
		return openssl(t, "verify", "-crl_check", "-CRLfile", crlFile, "-CAfile", caFile, filepath.Join(dir, user+".crt"))
	}
	wantVerified := func(t *testing.T, caFile string, users ...string) {
		t.Helper()
		for _, u := range users {
			if out, err := verify(t, caFile, u); err != nil || !strings.Contains(out, ": OK") {
				t.Errorf("openssl verify -crl_check %s: %v\n%s", u, err, out)
			}
		}
	}
	wantRevoked := func(t *testing.T, caFile string, users ...string) {
		t.Helper()
		for _, u := range users {
			if out, err := verify(t, caFile, u); err == nil || !strings.Contains(out, "certificate revoked") {
				t.Errorf("openssl verify -crl_check %s: %v, want \"certificate revoked\"\n%s", u, err, out)
			}
		}
	}
	crlVerifies := func(t *testing.T, caFile string) bool {
		t.Helper()
		out, err := openssl(t, "crl", "-in", crlFile, "-noout", "-verify", "-CAfile", caFile)
		return err == nil && strings.Contains(out, "verify OK")
	}

	rl0 := getCRL(t, 0)
	if len(rl0.RevokedCertificateEntries) != 0 {
		t.Fatalf("a fresh cluster's CRL lists %d certificates", len(rl0.RevokedCertificateEntries))
	}
	wantVerified(t, ca1File, "alice", "bob", "carol")

	// alice revokes her own certificate, naming its serial as openssl
	// prints it.
	a := mustRevoke(t, s, tok("alice"), cluster, map[string]any{"serial": colonSerial(alice.Serial), "reason": "keyCompromise"})
	if len(a.Revoked) != 1 || serialKey(a.Revoked[0]) != serialKey(alice.Serial) || a.Reason != "keyCompromise" || a.CAGeneration != 1 || a.Cluster != cluster {
		t.Fatalf("revocation answer %+v", a)
	}
	rl1 := getCRL(t, 0)
	if rl1.Number.Cmp(rl0.Number) <= 0 || rl1.Number.Int64() < a.CRLNumber {
		t.Errorf("CRL number %v after a revocation answered crl_number %d; before it %v", rl1.Number, a.CRLNumber, rl0.Number)
	}
	if got := crlSerials(rl1); len(got) != 1 || got[serialKey(alice.Serial)] != 1 {
		t.Errorf("CRL lists %v, want alice's serial %s with reason keyCompromise (1)", got, alice.Serial)
	}
	if err := rl1.CheckSignatureFrom(parseCert(t, ca1.Certificate)); err != nil {
		t.Errorf("the CRL is not signed by the cluster's CA: %v", err)
	}
	wantRevoked(t, ca1File, "alice")
	wantVerified(t, ca1File, "bob", "carol")
	if !crlVerifies(t, ca1File) {
		t.Error("openssl crl -verify: the CRL does not verify under generation 1's CA")
	}

	t.Run("the DER form is the same list", func(t *testing.T) {
		r, rl := fetchCRL(t, s, tok("alice"), cluster, 0, false)
		if rl == nil {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		if rl.Number.Cmp(rl1.Number) < 0 || !maps.Equal(crlSerials(rl), crlSerials(rl1)) {
			t.Errorf("DER CRL number %v lists %v; PEM one %v lists %v", rl.Number, crlSerials(rl), rl1.Number, crlSerials(rl1))
		}
	})

	// Revoking again is idempotent and keeps the first reason.
	mustRevoke(t, s, tok("alice"), cluster, map[string]any{"serial": strings.ToUpper(alice.Serial), "reason": "superseded"})
	// An admin revokes bob's; the number grows.
	mustRevoke(t, s, adminToken, cluster, map[string]any{"serial": bob.Serial, "reason": "cessationOfOperation"})
	rl2 := getCRL(t, 0)
	if rl2.Number.Cmp(rl1.Number) <= 0 {
		t.Errorf("CRL number %v after another revocation, was %v", rl2.Number, rl1.Number)
	}
	if got := crlSerials(rl2); len(got) != 2 || got[serialKey(alice.Serial)] != 1 || got[serialKey(bob.Serial)] != 5 {
		t.Errorf("CRL lists %v, want alice's (keyCompromise, 1, kept) and bob's (cessationOfOperation, 5)", got)
	}
	wantRevoked(t, ca1File, "alice", "bob")
	wantVerified(t, ca1File, "carol")

	// Rekey with a grace period: generation 1 stays trusted, and its CRL
	// is still served, signed by generation 1's CA.
	r := do(t, "POST", s.URL+"/v1/clusters/"+cluster+"/ca/rekey", adminToken, map[string]any{"expected_generation": 1, "grace_period_seconds": 3600})
	if r.Status != http.StatusOK {
		t.Fatalf("rekey: %d %s", r.Status, r.Body)
	}
	var ca2 caResource
	r.json(t, &ca2)
	ca2File := writeFile(t, dir, "ca2.pem", ca2.Certificate)
	dave := signAs(t, s, cluster, "dave")
	writeFile(t, dir, "dave.crt", dave.Certificate)

	t.Run("generation 1's CRL during its grace period", func(t *testing.T) {
		rl := getCRL(t, 1)
		if err := rl.CheckSignatureFrom(parseCert(t, ca1.Certificate)); err != nil {
			t.Errorf("?generation=1 is not signed by generation 1's CA: %v", err)
		}
		if rl.Number.Cmp(rl2.Number) < 0 {
			t.Errorf("?generation=1 number %v, below the earlier %v", rl.Number, rl2.Number)
		}
		if !crlVerifies(t, ca1File) || crlVerifies(t, ca2File) {
			t.Error("openssl crl -verify: generation 1's CRL must verify under CA 1 and not CA 2")
		}
		wantRevoked(t, ca1File, "alice", "bob")
		wantVerified(t, ca1File, "carol")
	})
	t.Run("the active generation's CRL", func(t *testing.T) {
		rl := getCRL(t, 0)
		if err := rl.CheckSignatureFrom(parseCert(t, ca2.Certificate)); err != nil {
			t.Errorf("the default CRL is not signed by the active (2) CA: %v", err)
		}
		if !crlVerifies(t, ca2File) || crlVerifies(t, ca1File) {
			t.Error("openssl crl -verify: the active CRL must verify under CA 2 and not CA 1")
		}
		if got := crlSerials(rl); len(got) != 0 {
			t.Errorf("generation 2's CRL lists generation 1's certificates: %v", got)
		}
		wantVerified(t, ca2File, "dave")
		mustRevoke(t, s, tok("dave"), cluster, map[string]any{"serial": dave.Serial, "reason": "unspecified"})
		rl = getCRL(t, 2)
		if got := crlSerials(rl); len(got) != 1 || got[serialKey(dave.Serial)] != 0 {
			t.Errorf("generation 2's CRL lists %v, want dave's alone", got)
		}
		wantRevoked(t, ca2File, "dave")
	})
	t.Run("revoking a user revokes their certificates of every trusted generation", func(t *testing.T) {
		// In the registry, and in the active generation's CRL.
		carol2 := signAs(t, s, cluster, "carol")
		writeFile(t, dir, "carol2.crt", carol2.Certificate)
		a := mustRevoke(t, s, adminToken, cluster, map[string]any{"user": "carol", "reason": "affiliationChanged"})
		got := []string{}
		for _, sr := range a.Revoked {
			got = append(got, serialKey(sr))
		}
		slices.Sort(got)
		want := []string{serialKey(carol.Serial), serialKey(carol2.Serial)}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("revoking carol revoked %v, want her generation 1 and 2 certificates %v", got, want)
		}
		if e, _ := certBySerial(t, s, tok("rita"), cluster, carol.Serial); e.Status != "revoked" || e.RevocationReason != "affiliationChanged" {
			t.Errorf("carol's generation 1 certificate in the registry: %+v", e)
		}
		// Generation 1's key was destroyed by the rekey: its CRL cannot be
		// signed again, and stays the last one built before the rekey
		// (a known limit, see notes/reve2e.md).
		rl := getCRL(t, 1)
		if err := rl.CheckSignatureFrom(parseCert(t, ca1.Certificate)); err != nil {
			t.Errorf("generation 1's CRL after the rekey: %v", err)
		}
		rl = getCRL(t, 2)
		if got := crlSerials(rl); got[serialKey(carol2.Serial)] != 3 || len(got) != 2 {
			t.Errorf("generation 2's CRL lists %v, want dave's and carol's generation 2 certificate", got)
		}
		wantRevoked(t, ca2File, "carol2")
	})
	t.Run("a generation outside the trust bundle is 404", func(t *testing.T) {
		for _, gen := range []int{3, 99} {
			if r, _ := fetchCRL(t, s, tok("rita"), cluster, gen, false); r.Status != http.StatusNotFound || r.problemCode(t) != "not_found" {
				t.Errorf("?generation=%d: %d %s, want 404 not_found", gen, r.Status, r.Body)
			}
		}
		createCA(t, s, tok("alice"), "rev-openssl-nograce", nil)
		if r := do(t, "POST", s.URL+"/v1/clusters/rev-openssl-nograce/ca/rekey", adminToken, map[string]any{"expected_generation": 1}); r.Status != http.StatusOK {
			t.Fatalf("rekey: %d %s", r.Status, r.Body)
		}
		if r, _ := fetchCRL(t, s, tok("rita"), "rev-openssl-nograce", 1, false); r.Status != http.StatusNotFound || r.problemCode(t) != "not_found" {
			t.Errorf("?generation=1 after a rekey with no grace: %d %s, want 404 not_found", r.Status, r.Body)
		}
		if r, _ := fetchCRL(t, s, tok("rita"), "rev-no-such-cluster", 0, false); r.Status != http.StatusNotFound || r.problemCode(t) != "ca_not_found" {
			t.Errorf("unknown cluster: %d %s, want 404 ca_not_found", r.Status, r.Body)
		}
		if r, _ := fetchCRL(t, s, tok("eve"), cluster, 0, false); r.Status != http.StatusForbidden {
			t.Errorf("another project's member: %d %s, want 403", r.Status, r.Body)
		}
	})
}

// TestRevocationEtcd: Debian's etcd with client certificate auth, a TLS
// server certificate signed by the cluster's CA and --client-crl-file
// written from the CRL route refuses a revoked user's client certificate
// and serves another user's.
func TestRevocationEtcd(t *testing.T) {
	for _, tool := range []string{"etcd", "etcdctl"} {
		need.Tool(t, tool, "test/kube/install-etcd.sh (apt-get install etcd-server etcd-client)")
	}
	s := startRevServer(t)
	const cluster = "rev-etcd"
	ca := createCA(t, s, adminToken, cluster, map[string]any{"project_id": "team-a"})
	dir := t.TempDir()
	caFile := writeFile(t, dir, "ca.pem", ca.Certificate)

	serverKey := p256(t)
	srv := sign(t, s, adminToken, cluster, map[string]any{"csr": serverCSR(t, serverKey, "etcd-e2e"), "profile": "peer"})
	writeFile(t, dir, "server.crt", srv.Certificate)
	writeFile(t, dir, "server.key", keyPEM(t, serverKey))
	alice, bob := signAs(t, s, cluster, "alice"), signAs(t, s, cluster, "bob")
	for _, h := range []holder{alice, bob} {
		writeFile(t, dir, h.user+".crt", h.Certificate)
		writeFile(t, dir, h.user+".key", keyPEM(t, h.key))
	}
	// The CRL file etcd reads: the cluster's, empty at first.
	crlFile := filepath.Join(dir, "crl.pem")
	writeCRL := func() {
		t.Helper()
		r, rl := fetchCRL(t, s, adminToken, cluster, 0, true)
		if rl == nil {
			t.Fatalf("CRL: %d %s", r.Status, r.Body)
		}
		writeFile(t, dir, "crl.pem.tmp", string(r.Body))
		if err := os.Rename(crlFile+".tmp", crlFile); err != nil {
			t.Fatal(err)
		}
	}
	writeCRL()

	clientURL := "https://" + testproc.FreeAddr(t)
	peerURL := "http://" + testproc.FreeAddr(t)
	cmd := exec.Command("etcd", "--name", "rev", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL, "--initial-cluster", "rev="+peerURL,
		"--cert-file", filepath.Join(dir, "server.crt"), "--key-file", filepath.Join(dir, "server.key"),
		"--client-cert-auth", "--trusted-ca-file", caFile, "--client-crl-file", crlFile, "--log-level", "warn")
	logs := &testproc.Output{}
	cmd.Stdout, cmd.Stderr = logs, logs
	testproc.Start(t, "etcd", cmd, 10*time.Second, logs)
	etcdctl := func(user string, args ...string) (string, error) {
		base := []string{"--endpoints", clientURL, "--cacert", caFile, "--cert", filepath.Join(dir, user+".crt"),
			"--key", filepath.Join(dir, user+".key"), "--dial-timeout", "3s", "--command-timeout", "5s"}
		c := exec.Command("etcdctl", append(base, args...)...)
		c.Env = append(os.Environ(), "ETCDCTL_API=3")
		out, err := c.CombinedOutput()
		return string(out), err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := etcdctl("bob", "endpoint", "health")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd not healthy for bob in 30 s: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, err := etcdctl("bob", "put", "/rev/k", "served"); err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("bob's put: %v\n%s", err, out)
	}
	if out, err := etcdctl("bob", "get", "/rev/k", "--print-value-only"); err != nil || strings.TrimSpace(out) != "served" {
		t.Fatalf("bob's get: %v\n%s", err, out)
	}
	if out, err := etcdctl("alice", "get", "/rev/k", "--print-value-only"); err != nil || strings.TrimSpace(out) != "served" {
		t.Fatalf("alice's get before her revocation: %v\n%s", err, out)
	}
	// Revoke alice; etcd reads the CRL file at every TLS handshake.
	a := mustRevoke(t, s, adminToken, cluster, map[string]any{"user": "alice", "reason": "affiliationChanged"})
	if a.User != "alice" || len(a.Revoked) != 1 || serialKey(a.Revoked[0]) != serialKey(alice.Serial) {
		t.Fatalf("revoking alice: %+v", a)
	}
	writeCRL()
	if out, err := etcdctl("alice", "get", "/rev/k", "--print-value-only"); err == nil || strings.Contains(out, "served") {
		t.Fatalf("alice's revoked certificate was served: %v\n%s", err, out)
	}
	if out, err := etcdctl("bob", "get", "/rev/k", "--print-value-only"); err != nil || strings.TrimSpace(out) != "served" {
		t.Fatalf("bob's get after alice's revocation: %v\n%s", err, out)
	}
}

// TestRevocationRoles: the subject rule, who may revoke what, user
// revocation refusing signs until lifted, and GET certificates/{serial}.
func TestRevocationRoles(t *testing.T) {
	s := startRevServer(t)
	const cluster = "rev-roles"
	createCA(t, s, tok("alice"), cluster, nil)
	certs := s.URL + "/v1/clusters/" + cluster + "/certificates"

	t.Run("a member cannot get a certificate naming another user", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			body map[string]any
		}{
			{"client CN=bob", map[string]any{"csr": newCSR(t, p256(t), "bob", []string{"developers"}), "profile": "client"}},
			{"default profile CN=bob", map[string]any{"csr": newCSR(t, p256(t), "bob", nil)}},
			{"peer CN=bob", map[string]any{"csr": newCSR(t, p256(t), "bob", nil, "bob.example.com"), "profile": "peer"}},
			{"client without a CN", map[string]any{"csr": newCSR(t, p256(t), "", nil, "alice.example.com"), "profile": "client"}},
		} {
			r := do(t, "POST", certs, tok("alice"), tt.body)
			if r.Status != http.StatusForbidden || r.problemCode(t) != "subject_not_allowed" || !strings.Contains(string(r.Body), `"field":"csr"`) {
				t.Errorf("%s: %d %s, want 403 subject_not_allowed field csr", tt.name, r.Status, r.Body)
			} else if !strings.Contains(string(r.Body), "alice") {
				t.Errorf("%s: the refusal does not name the expected CN alice: %s", tt.name, r.Body)
			}
		}
		r := do(t, "POST", s.URL+"/v1/certificates", tok("alice"), map[string]string{"cluster_uuid": cluster, "csr": newCSR(t, p256(t), "bob", nil)})
		if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "subject_not_allowed") {
			t.Errorf("Magnum route CN=bob: %d %s, want 403 subject_not_allowed", r.Status, r.Body)
		}
		// The server profile keeps its rules; admins sign any subject.
		if r := do(t, "POST", certs, tok("alice"), map[string]any{"csr": newCSR(t, p256(t), "web", nil, "web.example.com"), "profile": "server"}); r.Status != http.StatusCreated {
			t.Errorf("member, server profile CN=web: %d %s", r.Status, r.Body)
		}
		if r := do(t, "POST", certs, adminToken, map[string]any{"csr": newCSR(t, p256(t), "bob", nil), "profile": "client"}); r.Status != http.StatusCreated {
			t.Errorf("admin, client CN=bob: %d %s", r.Status, r.Body)
		}
		sign(t, s, tok("alice"), cluster, map[string]any{"csr": newCSR(t, p256(t), "alice", []string{"developers"}), "profile": "client"})
	})

	alice, bob, bob2, carol := signAs(t, s, cluster, "alice"), signAs(t, s, cluster, "bob"), signAs(t, s, cluster, "bob"), signAs(t, s, cluster, "carol")
	rev := func(token string, body any) response { _, r := revoke(t, s, token, cluster, body); return r }

	t.Run("who may revoke what", func(t *testing.T) {
		for _, tt := range []struct {
			name   string
			token  string
			body   map[string]any
			status int
			code   string
		}{
			{"a reader, a serial", tok("rita"), map[string]any{"serial": alice.Serial, "reason": "keyCompromise"}, 403, "forbidden"},
			{"a reader, a user", tok("rita"), map[string]any{"user": "alice", "reason": "keyCompromise"}, 403, "forbidden"},
			{"another project's member", tok("eve"), map[string]any{"serial": alice.Serial, "reason": "keyCompromise"}, 403, "forbidden"},
			{"a member, another user's serial", tok("bob"), map[string]any{"serial": alice.Serial, "reason": "keyCompromise"}, 403, "forbidden"},
			{"a member, a user", tok("alice"), map[string]any{"user": "bob", "reason": "affiliationChanged"}, 403, "forbidden"},
			{"a member, itself as a user", tok("alice"), map[string]any{"user": "alice", "reason": "affiliationChanged"}, 403, "forbidden"},
			{"a member, its own serial with reissue", tok("alice"), map[string]any{"serial": alice.Serial, "reason": "keyCompromise", "reissue": true}, 403, "forbidden"},
			{"an unknown serial", adminToken, map[string]any{"serial": "0badc0ffee", "reason": "keyCompromise"}, 404, "not_found"},
			{"an unknown reason", adminToken, map[string]any{"serial": alice.Serial, "reason": "privilegeWithdrawn"}, 400, "invalid_field"},
			{"no reason", adminToken, map[string]any{"serial": alice.Serial}, 400, ""},
			{"both serial and user", adminToken, map[string]any{"serial": alice.Serial, "user": "alice", "reason": "keyCompromise"}, 400, ""},
			{"neither serial nor user", adminToken, map[string]any{"reason": "keyCompromise"}, 400, ""},
			{"an unknown field", adminToken, map[string]any{"serial": alice.Serial, "reason": "keyCompromise", "colour": "red"}, 400, "unknown_field"},
			{"a grace period without reissue", adminToken, map[string]any{"user": "alice", "reason": "keyCompromise", "grace_period_seconds": 60}, 400, ""},
			{"a negative grace period", adminToken, map[string]any{"user": "alice", "reason": "keyCompromise", "reissue": true, "grace_period_seconds": -1}, 400, ""},
		} {
			r := rev(tt.token, tt.body)
			if r.Status != tt.status || (tt.code != "" && r.problemCode(t) != tt.code) {
				t.Errorf("%s: %d %s, want %d %s", tt.name, r.Status, r.Body, tt.status, tt.code)
			}
		}
		createCA(t, s, tok("alice"), "rev-roles-other", nil)
		elsewhere := signAs(t, s, "rev-roles-other", "alice")
		for _, token := range []string{tok("alice"), adminToken} {
			if r := rev(token, map[string]any{"serial": elsewhere.Serial, "reason": "keyCompromise"}); r.Status != 404 || r.problemCode(t) != "not_found" {
				t.Errorf("a serial of another cluster: %d %s, want 404 not_found", r.Status, r.Body)
			}
		}
		if _, r := certBySerial(t, s, tok("alice"), cluster, elsewhere.Serial); r.Status != 404 {
			t.Errorf("GET a serial of another cluster: %d %s, want 404", r.Status, r.Body)
		}
		if r := do(t, "POST", s.URL+"/v1/clusters/rev-nowhere/revocations", adminToken, map[string]any{"user": "alice", "reason": "keyCompromise"}); r.Status != 404 || r.problemCode(t) != "ca_not_found" {
			t.Errorf("unknown cluster: %d %s, want 404 ca_not_found", r.Status, r.Body)
		}
		if r := do(t, "POST", s.URL+"/v1/clusters/"+cluster+"/revocations", tok("alice"), map[string]any{"serial": alice.Serial, "reason": "privilegeWithdrawn"}); !strings.Contains(string(r.Body), `"field":"reason"`) {
			t.Errorf("an unknown reason does not name the reason field: %s", r.Body)
		}
		// Nothing above revoked anything.
		if got := registry(t, s, cluster, url.Values{"status": {"revoked"}}); len(got) != 0 {
			t.Fatalf("refused revocations revoked %d certificates: %+v", len(got), got)
		}
		// A member revokes its own serial; a second time is 200 too.
		for range 2 {
			if a := mustRevoke(t, s, tok("alice"), cluster, map[string]any{"serial": alice.Serial, "reason": "keyCompromise"}); len(a.Revoked) != 1 || a.Reason != "keyCompromise" {
				t.Errorf("own serial: %+v", a)
			}
		}
		e, r := certBySerial(t, s, tok("rita"), cluster, alice.Serial)
		if r.Status != 200 || e.Status != "revoked" || e.RevocationReason != "keyCompromise" || e.RevokedAt == "" || e.SupersededBy != "" {
			t.Errorf("GET alice's revoked certificate: %d %s", r.Status, r.Body)
		}
		if e.Certificate == "" || parseCert(t, e.Certificate).SerialNumber.Text(16) != serialKey(alice.Serial) {
			t.Errorf("GET alice's certificate by serial does not return it: %s", r.Body)
		}
		// An admin revokes another user's serial.
		mustRevoke(t, s, adminToken, cluster, map[string]any{"serial": carol.Serial, "reason": "superseded"})
	})

	t.Run("GET certificates/{serial}", func(t *testing.T) {
		e, r := certBySerial(t, s, tok("bob"), cluster, colonSerial(bob.Serial))
		if r.Status != 200 || serialKey(e.Serial) != serialKey(bob.Serial) || e.Status != "valid" || e.User != "bob" || e.Project != "team-a" ||
			e.Profile != "client" || e.CAGeneration != 1 || e.RevocationReason != "" || e.SupersededBy != "" {
			t.Errorf("GET bob's certificate: %d %s", r.Status, r.Body)
		}
		if e.Certificate != "" && parseCert(t, e.Certificate).SerialNumber.Text(16) != serialKey(bob.Serial) {
			t.Errorf("GET bob's certificate returns another one")
		}
		if _, r := certBySerial(t, s, tok("rita"), cluster, "0badc0ffee"); r.Status != 404 || r.problemCode(t) != "not_found" {
			t.Errorf("unknown serial: %d %s", r.Status, r.Body)
		}
		if _, r := certBySerial(t, s, tok("eve"), cluster, bob.Serial); r.Status != 403 {
			t.Errorf("another project: %d %s, want 403", r.Status, r.Body)
		}
		if _, r := certBySerial(t, s, tok("rita"), "rev-nowhere", bob.Serial); r.Status != 404 || r.problemCode(t) != "ca_not_found" {
			t.Errorf("unknown cluster: %d %s", r.Status, r.Body)
		}
	})

	t.Run("a revoked user cannot sign until the revocation is lifted", func(t *testing.T) {
		a := mustRevoke(t, s, adminToken, cluster, map[string]any{"user": "bob", "reason": "affiliationChanged"})
		got := []string{}
		for _, sr := range a.Revoked {
			got = append(got, serialKey(sr))
		}
		slices.Sort(got)
		want := []string{serialKey(bob.Serial), serialKey(bob2.Serial)}
		slices.Sort(want)
		if a.User != "bob" || !slices.Equal(got, want) || a.Reason != "affiliationChanged" {
			t.Errorf("revoking bob: %+v, want his two serials %v", a, want)
		}
		body := map[string]any{"csr": newCSR(t, p256(t), "bob", nil), "profile": "client"}
		if r := do(t, "POST", certs, tok("bob"), body); r.Status != 403 || r.problemCode(t) != "user_revoked" {
			t.Errorf("bob signs after his revocation: %d %s, want 403 user_revoked", r.Status, r.Body)
		}
		mr := do(t, "POST", s.URL+"/v1/certificates", tok("bob"), map[string]string{"cluster_uuid": cluster, "csr": newCSR(t, p256(t), "bob", nil)})
		if mr.Status != 403 || !strings.Contains(string(mr.Body), "user_revoked") {
			t.Errorf("bob signs through the Magnum route after his revocation: %d %s, want 403 user_revoked", mr.Status, mr.Body)
		}
		// A server certificate too: the user is refused, not a profile.
		if r := do(t, "POST", certs, tok("bob"), map[string]any{"csr": newCSR(t, p256(t), "web", nil, "web.example.com"), "profile": "server"}); r.Status != 403 || r.problemCode(t) != "user_revoked" {
			t.Errorf("bob signs a server certificate after his revocation: %d %s, want 403 user_revoked", r.Status, r.Body)
		}
		u := users(t, s, tok("rita"), cluster)
		if b := u["bob"]; !b.UserRevoked || b.Valid != 0 || b.Revoked != 2 || b.Project != "team-a" || b.LastIssued == "" {
			t.Errorf("users: bob = %+v", b)
		}
		if c := u["carol"]; c.UserRevoked || c.Revoked != 1 || c.Valid != 0 {
			t.Errorf("users: carol = %+v", c)
		}
		if a := u["alice"]; a.UserRevoked || a.Revoked != 1 || a.Valid < 2 {
			t.Errorf("users: alice = %+v", a)
		}
		if r := do(t, "GET", s.URL+"/v1/clusters/rev-nowhere/users", adminToken, nil); r.Status != 404 || r.problemCode(t) != "ca_not_found" {
			t.Errorf("users of an unknown cluster: %d %s, want 404 ca_not_found", r.Status, r.Body)
		}
		if r := do(t, "DELETE", s.URL+"/v1/clusters/rev-nowhere/revocations/users/bob", adminToken, nil); r.Status != 404 || r.problemCode(t) != "ca_not_found" {
			t.Errorf("lift on an unknown cluster: %d %s, want 404 ca_not_found", r.Status, r.Body)
		}
		if r := do(t, "GET", s.URL+"/v1/clusters/"+cluster+"/users", tok("eve"), nil); r.Status != 403 {
			t.Errorf("users for another project: %d %s", r.Status, r.Body)
		}
		lift := s.URL + "/v1/clusters/" + cluster + "/revocations/users/bob"
		for _, who := range []string{"bob", "alice", "rita"} {
			if r := do(t, "DELETE", lift, tok(who), nil); r.Status != 403 {
				t.Errorf("%s lifts bob's revocation: %d %s, want 403", who, r.Status, r.Body)
			}
		}
		if r := do(t, "DELETE", lift, adminToken, nil); r.Status != http.StatusNoContent {
			t.Fatalf("lift: %d %s", r.Status, r.Body)
		}
		if r := do(t, "DELETE", lift, adminToken, nil); r.Status != 404 || r.problemCode(t) != "not_found" {
			t.Errorf("lift again: %d %s, want 404 not_found", r.Status, r.Body)
		}
		if r := do(t, "DELETE", s.URL+"/v1/clusters/"+cluster+"/revocations/users/carol", adminToken, nil); r.Status != 404 {
			t.Errorf("lift a user never revoked: %d %s, want 404", r.Status, r.Body)
		}
		after := sign(t, s, tok("bob"), cluster, body)
		if e, _ := certBySerial(t, s, tok("bob"), cluster, bob.Serial); e.Status != "revoked" {
			t.Errorf("lifting the revocation unrevoked bob's old certificate: %+v", e)
		}
		if e, _ := certBySerial(t, s, tok("bob"), cluster, after.Serial); e.Status != "valid" {
			t.Errorf("bob's new certificate: %+v", e)
		}
		if b := users(t, s, adminToken, cluster)["bob"]; b.UserRevoked || b.Valid != 1 || b.Revoked != 2 {
			t.Errorf("users after the lift: bob = %+v", b)
		}
	})
}

// TestRevocationConcurrentSigns: 8 goroutines sign as four users while an
// admin revokes two of them; afterwards the registry, the users list, the
// CRL and the revocation answers agree, and no revoked user holds an
// unrevoked certificate.
func TestRevocationConcurrentSigns(t *testing.T) {
	s := startRevServer(t)
	const cluster = "rev-race"
	createCA(t, s, tok("alice"), cluster, nil)
	signers := []string{"alice", "bob", "carol", "dave"}
	revoked := []string{"carol", "dave"}
	csrs := map[string]string{}
	for _, u := range signers {
		csrs[u] = newCSR(t, p256(t), u, []string{"developers"})
	}
	// A few certificates each before the race.
	for _, u := range signers {
		for range 3 {
			sign(t, s, tok(u), cluster, map[string]any{"csr": csrs[u], "profile": "client"})
		}
	}
	type outcome struct {
		mu      sync.Mutex
		signed  map[string][]string // user → serials answered 201
		refused map[string]int      // user → 403 user_revoked
		other   []string
	}
	out := outcome{signed: map[string][]string{}, refused: map[string]int{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		u := signers[i%len(signers)]
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := tryDo("POST", s.URL+"/v1/clusters/"+cluster+"/certificates", tok(u), map[string]any{"csr": csrs[u], "profile": "client"})
				out.mu.Lock()
				switch {
				case err != nil:
					out.other = append(out.other, err.Error())
				case r.Status == http.StatusCreated:
					var sg signed
					if json.Unmarshal(r.Body, &sg) == nil {
						out.signed[u] = append(out.signed[u], sg.Serial)
					}
				case r.Status == http.StatusForbidden && strings.Contains(string(r.Body), `"code":"user_revoked"`):
					out.refused[u]++
				default:
					out.other = append(out.other, fmt.Sprintf("%s: %d %s", u, r.Status, r.Body))
				}
				out.mu.Unlock()
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	answers := make(map[string]revocationAnswer)
	var amu sync.Mutex
	var rw sync.WaitGroup
	for _, u := range revoked {
		rw.Go(func() {
			_, r := revoke(t, s, adminToken, cluster, map[string]any{"user": u, "reason": "affiliationChanged"})
			var a revocationAnswer
			if r.Status != http.StatusOK || json.Unmarshal(r.Body, &a) != nil {
				t.Errorf("revoke %s: %d %s", u, r.Status, r.Body)
				return
			}
			amu.Lock()
			answers[u] = a
			amu.Unlock()
		})
	}
	rw.Wait()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if len(out.other) > 0 {
		t.Errorf("%d signs answered neither 201 nor 403 user_revoked, first: %s", len(out.other), out.other[0])
	}
	for _, u := range revoked {
		if out.refused[u] == 0 {
			t.Errorf("%s was never refused after the revocation: the race did not happen", u)
		}
	}
	for _, u := range []string{"alice", "bob"} {
		if out.refused[u] != 0 || len(out.signed[u]) == 0 {
			t.Errorf("%s: %d signed, %d refused", u, len(out.signed[u]), out.refused[u])
		}
	}
	t.Logf("signed during the race: %d alice, %d bob, %d carol, %d dave; refused: %v",
		len(out.signed["alice"]), len(out.signed["bob"]), len(out.signed["carol"]), len(out.signed["dave"]), out.refused)

	all := registry(t, s, cluster, nil)
	byUser := map[string]map[string]int{} // user → status → count
	status := map[string]string{}         // serial → status
	for _, e := range all {
		if byUser[e.User] == nil {
			byUser[e.User] = map[string]int{}
		}
		byUser[e.User][e.Status]++
		status[serialKey(e.Serial)] = e.Status
	}
	for _, u := range revoked {
		if n := byUser[u]["valid"]; n != 0 {
			t.Errorf("%s, revoked, still has %d valid certificates", u, n)
		}
		want := map[string]bool{}
		for _, e := range all {
			if e.User == u {
				want[serialKey(e.Serial)] = true
			}
		}
		got := map[string]bool{}
		for _, sr := range answers[u].Revoked {
			got[serialKey(sr)] = true
		}
		if len(got) != len(want) {
			t.Errorf("revoking %s answered %d serials; the registry holds %d of %s's", u, len(got), len(want), u)
		}
		for sr := range want {
			if !got[sr] {
				t.Errorf("%s's certificate %s is not in the revocation's answer", u, sr)
			}
		}
		for _, sr := range out.signed[u] {
			if status[serialKey(sr)] != "revoked" {
				t.Errorf("%s's certificate %s, signed during the race, is %q", u, sr, status[serialKey(sr)])
			}
		}
	}
	for _, u := range []string{"alice", "bob"} {
		if byUser[u]["revoked"] != 0 {
			t.Errorf("%s lost %d certificates to others' revocations", u, byUser[u]["revoked"])
		}
	}
	revokedList := registry(t, s, cluster, url.Values{"status": {"revoked"}})
	_, rl := fetchCRL(t, s, tok("rita"), cluster, 0, false)
	if rl == nil {
		t.Fatal("no CRL")
	}
	inCRL := crlSerials(rl)
	if len(inCRL) != len(revokedList) {
		t.Errorf("the CRL lists %d serials, the registry %d revoked", len(inCRL), len(revokedList))
	}
	for _, e := range revokedList {
		if _, ok := inCRL[serialKey(e.Serial)]; !ok {
			t.Errorf("revoked %s (%s) is not in the CRL", e.Serial, e.User)
		}
		if code := inCRL[serialKey(e.Serial)]; code != 3 {
			t.Errorf("CRL reason of %s is %d, want affiliationChanged (3)", e.Serial, code)
		}
	}
	u := users(t, s, tok("rita"), cluster)
	for _, name := range signers {
		got := u[name]
		if got.Valid != byUser[name]["valid"] || got.Revoked != byUser[name]["revoked"] || got.Expired != byUser[name]["expired"] {
			t.Errorf("users says %s has %d valid, %d revoked, %d expired; the registry %v", name, got.Valid, got.Revoked, got.Expired, byUser[name])
		}
		if got.UserRevoked != slices.Contains(revoked, name) {
			t.Errorf("users: %s user_revoked = %v", name, got.UserRevoked)
		}
	}
}

// TestRevocationReissue: 1,000 certificates on one cluster, then one user
// is revoked with reissue. Every other certificate's old serial answers
// superseded_by and a certificate with the same key, subject, profile and
// SANs that verifies under the new CA; the revoked user's are not
// re-issued. The duration is logged (no timing assertion).
func TestRevocationReissue(t *testing.T) {
	s := startRevServer(t)
	const cluster = "rev-reissue"
	const total = 1000
	createCA(t, s, tok("alice"), cluster, nil)
	type issued struct {
		user, profile string
		pub           []byte
		signed
	}
	plan := make([]struct{ user, profile string }, 0, total)
	for i := range total {
		switch {
		case i%10 == 0:
			plan = append(plan, struct{ user, profile string }{"alice", "client"})
		case i%50 == 1:
			plan = append(plan, struct{ user, profile string }{"root", "server"})
		case i%50 == 2:
			plan = append(plan, struct{ user, profile string }{"root", "peer"})
		default:
			plan = append(plan, struct{ user, profile string }{[]string{"bob", "carol", "dave"}[i%3], "client"})
		}
	}
	certs := make([]issued, total)
	t0 := time.Now()
	var wg sync.WaitGroup
	work := make(chan int)
	for range 4 {
		wg.Go(func() {
			for i := range work {
				p := plan[i]
				k := p256(t)
				var csr string
				if p.profile == "client" {
					csr = newCSR(t, k, p.user, []string{"developers"})
				} else {
					csr = serverCSR(t, k, fmt.Sprintf("node-%d", i))
				}
				r, err := tryDo("POST", s.URL+"/v1/clusters/"+cluster+"/certificates", tok(p.user), map[string]any{"csr": csr, "profile": p.profile})
				if err != nil || r.Status != http.StatusCreated {
					t.Errorf("sign %d: %v %d %s", i, err, r.Status, r.Body)
					continue
				}
				var sg signed
				if err := json.Unmarshal(r.Body, &sg); err != nil {
					t.Errorf("sign %d: %v", i, err)
					continue
				}
				pub, _ := x509.MarshalPKIXPublicKey(k.Public())
				certs[i] = issued{user: p.user, profile: p.profile, pub: pub, signed: sg}
			}
		})
	}
	for i := range total {
		work <- i
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("signed %d certificates in %v", total, time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	a := mustRevoke(t, s, adminToken, cluster, map[string]any{"user": "alice", "reason": "affiliationChanged", "reissue": true})
	d := time.Since(t0)
	t.Logf("POST revocations {user: alice, reissue: true} over %d certificates: %v (%d revoked, %d re-issued)", total, d.Round(time.Millisecond), len(a.Revoked), len(a.Reissued))

	if a.CAGeneration != 2 || a.User != "alice" || len(a.NotReissued) != 0 {
		t.Fatalf("answer: generation %d, user %q, not_reissued %v", a.CAGeneration, a.User, a.NotReissued)
	}
	revokedSet := map[string]bool{}
	for _, sr := range a.Revoked {
		revokedSet[serialKey(sr)] = true
	}
	newOf := map[string]string{}
	for _, ri := range a.Reissued {
		newOf[serialKey(ri.Serial)] = ri.SupersededBy
	}
	var ca caResource
	do(t, "GET", s.URL+"/v1/clusters/"+cluster+"/ca", tok("rita"), nil).json(t, &ca)
	if ca.Generation != 2 {
		t.Fatalf("CA generation %d after the reissue", ca.Generation)
	}
	bundle := pool(t, ca.TrustBundle)
	nAlice := 0
	for i, c := range certs {
		old := serialKey(c.Serial)
		if c.user == "alice" {
			nAlice++
			if !revokedSet[old] {
				t.Errorf("alice's %s is not in revoked", c.Serial)
			}
			if _, ok := newOf[old]; ok {
				t.Errorf("alice's %s was re-issued", c.Serial)
			}
			if e, r := certBySerial(t, s, tok("rita"), cluster, c.Serial); r.Status != 200 || e.Status != "revoked" || e.SupersededBy != "" || e.RevocationReason != "affiliationChanged" {
				t.Errorf("alice's %s: %d %s", c.Serial, r.Status, r.Body)
			}
			continue
		}
		if revokedSet[old] {
			t.Errorf("%s's %s was revoked", c.user, c.Serial)
		}
		newSerial, ok := newOf[old]
		if !ok {
			t.Errorf("%d: %s's %s was not re-issued", i, c.user, c.Serial)
			continue
		}
		e, r := certBySerial(t, s, tok("rita"), cluster, c.Serial)
		if r.Status != 200 || serialKey(e.SupersededBy) != serialKey(newSerial) || e.Certificate == "" {
			t.Errorf("GET old serial %s: %d %s, want superseded_by %s", c.Serial, r.Status, r.Body, newSerial)
			continue
		}
		oldCert, nc := parseCert(t, c.Certificate), parseCert(t, e.Certificate)
		usage := x509.ExtKeyUsageClientAuth
		if c.profile == "server" {
			usage = x509.ExtKeyUsageServerAuth
		}
		switch {
		case nc.SerialNumber.Text(16) != serialKey(newSerial):
			t.Errorf("%s: the certificate answered has serial %x, want %s", c.Serial, nc.SerialNumber, newSerial)
		case string(nc.RawSubjectPublicKeyInfo) != string(c.pub):
			t.Errorf("%s: the re-issued certificate has another public key", c.Serial)
		case string(nc.RawSubject) != string(oldCert.RawSubject):
			t.Errorf("%s: subject %v, was %v", c.Serial, nc.Subject, oldCert.Subject)
		case !nc.NotAfter.Equal(oldCert.NotAfter) && !nc.NotAfter.Equal(parseCert(t, ca.Certificate).NotAfter):
			t.Errorf("%s: not_after %v, was %v", c.Serial, nc.NotAfter, oldCert.NotAfter)
		case !slices.Equal(nc.ExtKeyUsage, oldCert.ExtKeyUsage) || nc.KeyUsage != oldCert.KeyUsage:
			t.Errorf("%s: usages %v/%v, were %v/%v", c.Serial, nc.ExtKeyUsage, nc.KeyUsage, oldCert.ExtKeyUsage, oldCert.KeyUsage)
		case !slices.Equal(nc.DNSNames, oldCert.DNSNames) || fmt.Sprint(nc.IPAddresses) != fmt.Sprint(oldCert.IPAddresses):
			t.Errorf("%s: SANs %v %v, were %v %v", c.Serial, nc.DNSNames, nc.IPAddresses, oldCert.DNSNames, oldCert.IPAddresses)
		}
		if _, err := nc.Verify(x509.VerifyOptions{Roots: bundle, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("%s: the re-issued certificate does not verify under the new CA: %v", c.Serial, err)
		}
		if _, err := oldCert.Verify(x509.VerifyOptions{Roots: bundle, KeyUsages: []x509.ExtKeyUsage{usage}}); err == nil {
			t.Errorf("%s: the old certificate still verifies after a reissue with no grace", c.Serial)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	if len(revokedSet) != nAlice || len(newOf) != total-nAlice {
		t.Errorf("%d revoked, %d re-issued; want %d and %d", len(revokedSet), len(newOf), nAlice, total-nAlice)
	}
	if r := do(t, "POST", s.URL+"/v1/clusters/"+cluster+"/certificates", tok("alice"), map[string]any{"csr": newCSR(t, p256(t), "alice", nil)}); r.Status != 403 || r.problemCode(t) != "user_revoked" {
		t.Errorf("alice signs after her revocation: %d %s", r.Status, r.Body)
	}
	// The new certificates are valid, listed under generation 2, and
	// nothing else is valid.
	valid := registry(t, s, cluster, url.Values{"status": {"valid"}})
	if len(valid) != total-nAlice {
		t.Errorf("%d valid certificates after the reissue, want %d", len(valid), total-nAlice)
	}
	for _, e := range valid {
		if e.CAGeneration != 2 {
			t.Errorf("valid %s of generation %d", e.Serial, e.CAGeneration)
			break
		}
	}
}

// TestRevocationReissueCAS: two reissuing revocations racing on one
// generation: one wins, the other answers 409 generation_mismatch and
// changes nothing (its user is not revoked).
func TestRevocationReissueCAS(t *testing.T) {
	s := startRevServer(t)
	const cluster = "rev-cas"
	createCA(t, s, tok("alice"), cluster, nil)
	for _, u := range []string{"alice", "bob", "carol"} {
		signAs(t, s, cluster, u)
	}
	var wg sync.WaitGroup
	statuses := map[string]int{}
	var mu sync.Mutex
	for _, u := range []string{"alice", "bob"} {
		wg.Go(func() {
			r, err := tryDo("POST", s.URL+"/v1/clusters/"+cluster+"/revocations", adminToken, map[string]any{"user": u, "reason": "affiliationChanged", "reissue": true})
			if err != nil {
				t.Error(err)
				return
			}
			if r.Status == http.StatusConflict && !strings.Contains(string(r.Body), `"code":"generation_mismatch"`) {
				t.Errorf("%s: 409 %s, want generation_mismatch", u, r.Body)
			}
			mu.Lock()
			statuses[u] = r.Status
			mu.Unlock()
		})
	}
	wg.Wait()
	var ca caResource
	do(t, "GET", s.URL+"/v1/clusters/"+cluster+"/ca", tok("rita"), nil).json(t, &ca)
	u := users(t, s, tok("rita"), cluster)
	switch {
	case statuses["alice"] == 200 && statuses["bob"] == 200:
		// Serialised rather than raced: both rotated, in turn.
		if ca.Generation != 3 || !u["alice"].UserRevoked || !u["bob"].UserRevoked {
			t.Errorf("both won: generation %d, users %+v", ca.Generation, u)
		}
	case statuses["alice"]+statuses["bob"] == 200+409:
		loser := "alice"
		if statuses["alice"] == 200 {
			loser = "bob"
		}
		if ca.Generation != 2 || u[loser].UserRevoked || u[loser].Valid != 1 {
			t.Errorf("%s lost the race but changed something: generation %d, %+v", loser, ca.Generation, u[loser])
		}
	default:
		t.Errorf("statuses %v, want a 200 and a 409 (or two 200s)", statuses)
	}
	if c := u["carol"]; c.Valid != 1 || c.UserRevoked {
		t.Errorf("carol, re-issued and never revoked: %+v", c)
	}
}

// TestREADMERevokeWalkthrough runs the README's walkthrough "alice leaves:
// revoke her alone" as written, against a fresh server whose token file
// holds an admin ($CLUSTERKEYS_TOKEN), alice ($ALICE_TOKEN) and bob
// ($BOB_TOKEN), members of team-a.
func TestREADMERevokeWalkthrough(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq", "openssl"} {
		need.Tool(t, tool, "apt-get install "+tool+" (or make deps)")
	}
	_, file, _, _ := runtime.Caller(0)
	readme, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## Walkthrough: alice leaves[^\n]*\n.*?```sh\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal(`README has no "## Walkthrough: alice leaves: revoke her alone" section with a sh block`)
	}
	script := string(m[1])
	if !strings.Contains(script, "URL=http://127.0.0.1:8080") {
		t.Fatal("the walkthrough no longer sets URL=http://127.0.0.1:8080")
	}
	s := startRevServer(t)
	script = strings.Replace(script, "URL=http://127.0.0.1:8080", "URL="+s.URL, 1)
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "CLUSTERKEYS_TOKEN="+adminToken, "ALICE_TOKEN="+tok("alice"), "BOB_TOKEN="+tok("bob"))
	out, _ := cmd.CombinedOutput() // openssl verify fails on purpose for alice
	got := string(out)
	for _, want := range []string{
		`{"user":"alice","valid":1}`,
		`{"user":"bob","valid":1}`,
		`{"revoked":1,"ca_generation":2,"reissued":1}`,
		"user_revoked",
		"certificate revoked",
		"bob.crt: OK",
		"bob-new.crt: OK",
		"alice.crt: verification failed",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("walkthrough output lacks %q:\n%s", want, got)
		}
	}
	for _, secret := range []string{adminToken, tok("alice"), tok("bob")} {
		if strings.Contains(got, secret) {
			t.Error("the walkthrough printed a token")
		}
	}
}

// TestRevocationReissueBySerial: revoking one serial with reissue re-issues
// everything else, the user's other certificates included, and does not
// revoke the user; revoking a superseded serial later revokes its
// successor too (they share the key).
func TestRevocationReissueBySerial(t *testing.T) {
	s := startRevServer(t)
	const cluster = "rev-serial"
	createCA(t, s, tok("alice"), cluster, nil)
	a1, a2, bob := signAs(t, s, cluster, "alice"), signAs(t, s, cluster, "alice"), signAs(t, s, cluster, "bob")
	node := sign(t, s, adminToken, cluster, map[string]any{"csr": newCSR(t, p256(t), "system:node:n1", []string{"system:nodes"}), "profile": "client"})
	a := mustRevoke(t, s, adminToken, cluster, map[string]any{"serial": a1.Serial, "reason": "keyCompromise", "reissue": true})
	if len(a.Revoked) != 1 || serialKey(a.Revoked[0]) != serialKey(a1.Serial) || a.User != "" || a.CAGeneration != 2 || len(a.Reissued) != 3 {
		t.Fatalf("answer %+v, want a1 revoked and a2, bob's and the node's re-issued under generation 2", a)
	}
	newOf := map[string]string{}
	for _, r := range a.Reissued {
		newOf[serialKey(r.Serial)] = r.SupersededBy
	}
	if newOf[serialKey(a2.Serial)] == "" || newOf[serialKey(bob.Serial)] == "" {
		t.Fatalf("reissued %+v, want alice's second and bob's", a.Reissued)
	}
	if e, _ := certBySerial(t, s, adminToken, cluster, newOf[serialKey(node.Serial)]); e.Privileged == nil || !*e.Privileged || e.User != "root" || e.Status != "valid" {
		t.Errorf("the node's re-issued certificate: %+v, want privileged, requested by root, valid", e)
	}
	if e, _ := certBySerial(t, s, adminToken, cluster, newOf[serialKey(bob.Serial)]); e.Privileged == nil || *e.Privileged || e.User != "bob" || e.Project != "team-a" {
		t.Errorf("bob's re-issued certificate: %+v, want not privileged, requested by bob of team-a", e)
	}
	if e, _ := certBySerial(t, s, tok("alice"), cluster, a1.Serial); e.Status != "revoked" || e.SupersededBy != "" || e.RevocationReason != "keyCompromise" {
		t.Errorf("the revoked serial: %+v", e)
	}
	if u := users(t, s, tok("rita"), cluster)["alice"]; u.UserRevoked {
		t.Errorf("revoking one serial revoked the user: %+v", u)
	}
	sign(t, s, tok("alice"), cluster, map[string]any{"csr": newCSR(t, p256(t), "alice", nil)})

	// bob revokes his old serial: its successor, same key, goes with it.
	b := mustRevoke(t, s, tok("bob"), cluster, map[string]any{"serial": bob.Serial, "reason": "keyCompromise"})
	got := []string{}
	for _, sr := range b.Revoked {
		got = append(got, serialKey(sr))
	}
	slices.Sort(got)
	want := []string{serialKey(bob.Serial), serialKey(newOf[serialKey(bob.Serial)])}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("revoking bob's superseded serial revoked %v, want it and its successor %v", got, want)
	}
	if e, _ := certBySerial(t, s, tok("bob"), cluster, newOf[serialKey(bob.Serial)]); e.Status != "revoked" {
		t.Errorf("bob's re-issued certificate after revoking his old serial: %+v", e)
	}
	_, rl := fetchCRL(t, s, tok("rita"), cluster, 0, false)
	if rl == nil || crlSerials(rl)[serialKey(newOf[serialKey(bob.Serial)])] != 1 {
		t.Errorf("generation 2's CRL does not list bob's re-issued certificate")
	}

	// A reissue with a grace period keeps generation 2 trusted; carol
	// revokes her generation 3 certificate (say its key leaked): her
	// generation 2 one, same key, is revoked with it.
	carol := signAs(t, s, cluster, "carol")
	c := mustRevoke(t, s, adminToken, cluster, map[string]any{"serial": a2.Serial, "reason": "superseded", "reissue": true, "grace_period_seconds": 3600})
	var carolNew string
	for _, r := range c.Reissued {
		if serialKey(r.Serial) == serialKey(carol.Serial) {
			carolNew = r.SupersededBy
		}
	}
	if carolNew == "" {
		t.Fatalf("carol's certificate was not re-issued: %+v", c)
	}
	cr := mustRevoke(t, s, tok("carol"), cluster, map[string]any{"serial": carolNew, "reason": "keyCompromise"})
	if len(cr.Revoked) != 2 {
		t.Errorf("revoking carol's re-issued serial revoked %v, want it and its predecessor %s", cr.Revoked, carol.Serial)
	}
	if e, _ := certBySerial(t, s, tok("carol"), cluster, carol.Serial); e.Status != "revoked" || e.RevocationReason != "keyCompromise" {
		t.Errorf("carol's generation 2 certificate, same key as the revoked one: %+v", e)
	}
}

// TestRevocationTwoInstances: two localrun on one PostgreSQL database. A
// user revoked through one instance is refused by the other; the CRL is
// cached in the store (both serve the same one), and CRLs built at once by
// both instances after a revocation never share a number.
func TestRevocationTwoInstances(t *testing.T) {
	pg := startPostgres(t)
	shared := sharedConfig(t, pg)
	lines := make([]string, 0, len(revTokens))
	for _, l := range revTokens {
		lines = append(lines, l)
	}
	tokens := writeTokens(t, t.TempDir(), lines...)
	for i := range shared {
		if shared[i] == "--token-auth-file" {
			shared[i+1] = tokens
		}
	}
	a := startServer(t, serverOpts{args: shared})
	b := startServer(t, serverOpts{args: shared})
	const cluster = "rev-two"
	createCA(t, a, tok("alice"), cluster, nil)
	alice, bob, carol := signAs(t, b, cluster, "alice"), signAs(t, a, cluster, "bob"), signAs(t, b, cluster, "carol")
	crlDER := func(s *server) (*x509.RevocationList, []byte) {
		t.Helper()
		r, rl := fetchCRL(t, s, tok("rita"), cluster, 0, false)
		if rl == nil {
			t.Fatalf("CRL: %d %s", r.Status, r.Body)
		}
		return rl, r.Body
	}
	rl0, _ := crlDER(a)

	ans := mustRevoke(t, a, adminToken, cluster, map[string]any{"user": "alice", "reason": "affiliationChanged"})
	if r := do(t, "POST", b.URL+"/v1/clusters/"+cluster+"/certificates", tok("alice"), map[string]any{"csr": newCSR(t, p256(t), "alice", nil)}); r.Status != 403 || r.problemCode(t) != "user_revoked" {
		t.Errorf("alice signs through the other instance: %d %s, want 403 user_revoked", r.Status, r.Body)
	}
	rlA, derA := crlDER(a)
	rlB, derB := crlDER(b)
	if string(derA) != string(derB) {
		t.Errorf("the instances serve different CRLs (numbers %v and %v): the CRL is not the store's", rlA.Number, rlB.Number)
	}
	if _, ok := crlSerials(rlB)[serialKey(alice.Serial)]; !ok || rlB.Number.Cmp(rl0.Number) <= 0 || rlB.Number.Int64() < ans.CRLNumber {
		t.Errorf("the other instance's CRL: number %v (before %v, answer %d), lists %v", rlB.Number, rl0.Number, ans.CRLNumber, crlSerials(rlB))
	}

	// Revocations through both instances at once, then CRLs fetched from
	// both at once: one number, one list.
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, r := revoke(t, a, tok("bob"), cluster, map[string]any{"serial": bob.Serial, "reason": "keyCompromise"}); r.Status != 200 {
			t.Errorf("bob's revocation: %d %s", r.Status, r.Body)
		}
	})
	wg.Go(func() {
		if _, r := revoke(t, b, tok("carol"), cluster, map[string]any{"serial": carol.Serial, "reason": "keyCompromise"}); r.Status != 200 {
			t.Errorf("carol's revocation: %d %s", r.Status, r.Body)
		}
	})
	wg.Wait()
	var mu sync.Mutex
	byNumber := map[string]string{}
	for i := range 16 {
		s := []*server{a, b}[i%2]
		wg.Go(func() {
			r, err := tryDo("GET", s.URL+"/v1/clusters/"+cluster+"/crl", tok("rita"), nil)
			if err != nil || r.Status != 200 {
				t.Errorf("CRL: %v %d %s", err, r.Status, r.Body)
				return
			}
			rl, err := x509.ParseRevocationList(r.Body)
			if err != nil {
				t.Error(err)
				return
			}
			if len(rl.RevokedCertificateEntries) != 3 {
				t.Errorf("CRL number %v lists %d certificates, want 3", rl.Number, len(rl.RevokedCertificateEntries))
			}
			mu.Lock()
			defer mu.Unlock()
			if prev, ok := byNumber[rl.Number.String()]; ok && prev != string(r.Body) {
				t.Errorf("two different CRLs have number %v", rl.Number)
			}
			byNumber[rl.Number.String()] = string(r.Body)
			if rl.Number.Cmp(rlB.Number) <= 0 {
				t.Errorf("CRL number %v after two more revocations, was %v", rl.Number, rlB.Number)
			}
		})
	}
	wg.Wait()
}

// TestRevocationReissueUnderSigns: a reissue over 500 certificates
// succeeds while a member keeps signing on the cluster, every 50 ms or
// back to back (no pause: the reissue used to give up with 409 conflict),
// and nobody loses access: every certificate a sign answered 201 for is
// either of the new generation or re-issued under it.
func TestRevocationReissueUnderSigns(t *testing.T) {
	s := startRevServer(t)
	for _, tc := range []struct {
		name    string
		cluster string
		pause   time.Duration
	}{
		{"every 50 ms", "rev-busy", 50 * time.Millisecond},
		{"back to back", "rev-busier", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reissueUnderSigns(t, s, tc.cluster, tc.pause)
		})
	}
}

// reissueUnderSigns signs 500 certificates on a new cluster, then revokes
// alice with reissue while carol signs with pause between her signs.
func reissueUnderSigns(t *testing.T, s *server, cluster string, pause time.Duration) {
	t.Helper()
	createCA(t, s, tok("alice"), cluster, nil)
	var wg sync.WaitGroup
	work := make(chan string)
	for range 4 {
		wg.Go(func() {
			for u := range work {
				signAs(t, s, cluster, u)
			}
		})
	}
	for i := range 500 {
		work <- []string{"alice", "bob", "carol", "dave"}[i%4]
	}
	close(work)
	wg.Wait()
	stop := make(chan struct{})
	var signs []signed
	var other []string
	refused := 0
	var sw sync.WaitGroup
	sw.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			r, err := tryDo("POST", s.URL+"/v1/clusters/"+cluster+"/certificates", tok("carol"), map[string]any{"csr": newCSR(t, p256(t), "carol", nil)})
			switch {
			case err != nil:
				other = append(other, err.Error())
			case r.Status == http.StatusCreated:
				var sg signed
				if json.Unmarshal(r.Body, &sg) == nil {
					signs = append(signs, sg)
				}
			case r.Status == http.StatusConflict && strings.Contains(string(r.Body), `"code":"generation_mismatch"`):
				// a sign racing the rotation: the signer retries
				refused++
			default:
				other = append(other, fmt.Sprintf("%d %s", r.Status, r.Body))
			}
			time.Sleep(pause)
		}
	})
	time.Sleep(300 * time.Millisecond)
	t0 := time.Now()
	_, r := revoke(t, s, adminToken, cluster, map[string]any{"user": "alice", "reason": "affiliationChanged", "reissue": true})
	d := time.Since(t0)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	sw.Wait()
	if r.Status != http.StatusOK {
		t.Fatalf("reissue while carol signs: %d %s after %v", r.Status, r.Body, d)
	}
	t.Logf("reissue over 500 certificates while carol signed (pause %v): %v; %d signs answered 201, %d 409 generation_mismatch",
		pause, d.Round(time.Millisecond), len(signs), refused)
	if len(other) > 0 {
		t.Errorf("%d signs answered neither 201 nor 409 generation_mismatch, first: %s", len(other), other[0])
	}
	for _, sg := range signs {
		if sg.CAGeneration == 2 {
			continue
		}
		if e, r := certBySerial(t, s, tok("carol"), cluster, sg.Serial); r.Status != 200 || e.SupersededBy == "" {
			t.Errorf("carol's generation %d certificate %s, signed during the reissue, was not re-issued: %d %s", sg.CAGeneration, sg.Serial, r.Status, r.Body)
		}
	}
	for _, e := range registry(t, s, cluster, url.Values{"status": {"valid"}}) {
		if e.CAGeneration != 2 || e.User == "alice" {
			t.Errorf("after the reissue, valid %s of %s is of generation %d", e.Serial, e.User, e.CAGeneration)
		}
	}
}
