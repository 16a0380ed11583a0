package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// caResource is the CA resource of the API contract.
type caResource struct {
	Cluster           string `json:"cluster"`
	Generation        int    `json:"generation"`
	Certificate       string `json:"certificate"`
	TrustBundle       string `json:"trust_bundle"`
	KeyAlgorithm      string `json:"key_algorithm"`
	NotBefore         string `json:"not_before"`
	NotAfter          string `json:"not_after"`
	FingerprintSHA256 string `json:"fingerprint_sha256"`
}

// signed is the sign-CSR response of the API contract.
type signed struct {
	Certificate   string `json:"certificate"`
	Serial        string `json:"serial"`
	NotAfter      string `json:"not_after"`
	CAGeneration  int    `json:"ca_generation"`
	CACertificate string `json:"ca_certificate"`
}

func createCA(t *testing.T, s *server, token, cluster string, body any) caResource {
	t.Helper()
	r := do(t, "PUT", s.URL+"/v1/clusters/"+cluster+"/ca", token, body)
	if r.Status != http.StatusCreated {
		t.Fatalf("create CA %s: %d %s", cluster, r.Status, r.Body)
	}
	var ca caResource
	r.json(t, &ca)
	return ca
}

func sign(t *testing.T, s *server, token, cluster string, body any) signed {
	t.Helper()
	r := do(t, "POST", s.URL+"/v1/clusters/"+cluster+"/certificates", token, body)
	if r.Status != http.StatusCreated {
		t.Fatalf("sign for %s: %d %s", cluster, r.Status, r.Body)
	}
	var out signed
	r.json(t, &out)
	return out
}

// verifies reports whether cert chains to a root of bundle for usage.
func verifies(t *testing.T, certPEM, bundle string, usage x509.ExtKeyUsage) error {
	t.Helper()
	_, err := parseCert(t, certPEM).Verify(x509.VerifyOptions{
		Roots: pool(t, bundle), KeyUsages: []x509.ExtKeyUsage{usage},
	})
	return err
}

// TestCAWalkthrough follows the README: create a CA, sign, rekey with grace
// 0, and checks that credentials of the old CA stop verifying at once.
func TestCAWalkthrough(t *testing.T) {
	s := startServer(t, serverOpts{})

	ca := createCA(t, s, memberToken, "prod-1", map[string]any{"key_algorithm": "ecdsa-p256"})
	if ca.Generation != 1 || ca.Cluster != "prod-1" || ca.KeyAlgorithm != "ecdsa-p256" {
		t.Fatalf("CA = %+v", ca)
	}
	caCert := parseCert(t, ca.Certificate)
	if !caCert.IsCA || caCert.Subject.String() == "" {
		t.Fatalf("CA certificate is not a CA: %+v", caCert.Subject)
	}

	t.Run("creating the same CA again answers 200 with the same CA", func(t *testing.T) {
		r := do(t, "PUT", s.URL+"/v1/clusters/prod-1/ca", memberToken, map[string]any{"key_algorithm": "ecdsa-p256"})
		var again caResource
		r.json(t, &again)
		if r.Status != 200 || again.FingerprintSHA256 != ca.FingerprintSHA256 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("creating it with other parameters is 409", func(t *testing.T) {
		r := do(t, "PUT", s.URL+"/v1/clusters/prod-1/ca", memberToken, map[string]any{"key_algorithm": "rsa-2048"})
		if r.Status != 409 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})

	key := p256(t)
	before := sign(t, s, memberToken, "prod-1", map[string]any{"csr": newCSR(t, key, "alice", []string{"devs"}), "profile": "client"})
	if before.CAGeneration != 1 {
		t.Fatalf("signed by generation %d", before.CAGeneration)
	}
	if err := verifies(t, before.Certificate, ca.TrustBundle, x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatalf("a fresh client certificate does not verify against the trust bundle: %v", err)
	}
	leaf := parseCert(t, before.Certificate)
	if leaf.IsCA || leaf.Subject.CommonName != "alice" || leaf.SerialNumber.BitLen() < 64 {
		t.Fatalf("issued certificate: CA=%v subject=%v serial bits=%d", leaf.IsCA, leaf.Subject, leaf.SerialNumber.BitLen())
	}
	if leaf.NotAfter.After(caCert.NotAfter) {
		t.Fatal("certificate outlives its CA")
	}

	t.Run("a stale expected_generation is 409 generation_mismatch", func(t *testing.T) {
		r := do(t, "POST", s.URL+"/v1/clusters/prod-1/ca/rekey", memberToken, map[string]any{"expected_generation": 7})
		if r.Status != 409 || r.problemCode(t) != "generation_mismatch" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})

	r := do(t, "POST", s.URL+"/v1/clusters/prod-1/ca/rekey", memberToken, map[string]any{"expected_generation": 1, "grace_period_seconds": 0})
	if r.Status != 200 {
		t.Fatalf("rekey: %d %s", r.Status, r.Body)
	}
	var rekeyed caResource
	r.json(t, &rekeyed)
	if rekeyed.Generation != 2 || rekeyed.FingerprintSHA256 == ca.FingerprintSHA256 {
		t.Fatalf("rekeyed = %+v", rekeyed)
	}
	if err := verifies(t, before.Certificate, rekeyed.TrustBundle, x509.ExtKeyUsageClientAuth); err == nil {
		t.Fatal("after a rekey with grace 0, a certificate of the old CA still verifies against the trust bundle")
	}
	after := sign(t, s, memberToken, "prod-1", map[string]any{"csr": newCSR(t, key, "alice", nil), "profile": "client"})
	if after.CAGeneration != 2 {
		t.Fatalf("signed by generation %d after rekey", after.CAGeneration)
	}
	if err := verifies(t, after.Certificate, rekeyed.TrustBundle, x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatalf("a certificate of the new CA does not verify: %v", err)
	}
	var shown caResource
	do(t, "GET", s.URL+"/v1/clusters/prod-1/ca", readerToken, nil).json(t, &shown)
	if shown.Generation != 2 || shown.TrustBundle != rekeyed.TrustBundle {
		t.Fatalf("GET after rekey = generation %d", shown.Generation)
	}

	t.Run("the registry lists who got what and that rekey revoked it", func(t *testing.T) {
		r := do(t, "GET", s.URL+"/v1/clusters/prod-1/certificates", readerToken, nil)
		var list struct {
			Certificates []struct {
				Serial       string `json:"serial"`
				User         string `json:"requester_user"`
				CAGeneration int    `json:"ca_generation"`
				Status       string `json:"status"`
			} `json:"certificates"`
		}
		r.json(t, &list)
		if r.Status != 200 || len(list.Certificates) != 2 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		newest, oldest := list.Certificates[0], list.Certificates[1]
		if newest.Serial != after.Serial || newest.Status != "valid" || newest.CAGeneration != 2 ||
			oldest.Serial != before.Serial || oldest.Status != "revoked" || oldest.User != "alice" {
			t.Fatalf("registry = %+v", list.Certificates)
		}
		if r := do(t, "GET", s.URL+"/v1/clusters/prod-1/certificates", otherToken, nil); r.Status != 403 {
			t.Fatalf("another project read the registry: %d", r.Status)
		}
	})

	t.Run("with a grace period the old CA stays in the trust bundle", func(t *testing.T) {
		c := createCA(t, s, memberToken, "grace", nil)
		old := sign(t, s, memberToken, "grace", map[string]any{"csr": newCSR(t, key, "alice", nil), "profile": "client"})
		r := do(t, "POST", s.URL+"/v1/clusters/grace/ca/rekey", memberToken, map[string]any{"grace_period_seconds": 3600})
		var next caResource
		r.json(t, &next)
		if r.Status != 200 || next.Generation != c.Generation+1 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		if err := verifies(t, old.Certificate, next.TrustBundle, x509.ExtKeyUsageClientAuth); err != nil {
			t.Fatalf("old certificate no longer verifies during the grace period: %v", err)
		}
	})
}

// TestConcurrentRekeysNeverFork races rekeys with the same expected
// generation: exactly one wins, the others get 409.
func TestConcurrentRekeysNeverFork(t *testing.T) {
	s := startServer(t, serverOpts{})
	createCA(t, s, adminToken, "race", nil)
	const n = 8
	var wg sync.WaitGroup
	statuses := make(chan int, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- do(t, "POST", s.URL+"/v1/clusters/race/ca/rekey", adminToken, map[string]any{"expected_generation": 1}).Status
		}()
	}
	wg.Wait()
	close(statuses)
	won := 0
	for st := range statuses {
		switch st {
		case 200:
			won++
		case 409:
		default:
			t.Errorf("unexpected status %d", st)
		}
	}
	if won != 1 {
		t.Fatalf("%d rekeys won, want exactly 1", won)
	}
	var ca caResource
	do(t, "GET", s.URL+"/v1/clusters/race/ca", adminToken, nil).json(t, &ca)
	if ca.Generation != 2 {
		t.Fatalf("generation = %d after one winning rekey", ca.Generation)
	}
}

// TestBadInputChangesNothing sends every kind of bad request the issue lists
// through HTTP and checks the status, the stable code, and that the CA and
// its registry did not change.
func TestBadInputChangesNothing(t *testing.T) {
	s := startServer(t, serverOpts{})
	ca := createCA(t, s, memberToken, "c1", map[string]any{"validity_days": 30})

	good := newCSR(t, p256(t), "alice", nil, "node-1.example.com")
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tampered := tamperCSR(t, good)
	url := s.URL + "/v1/clusters/c1/certificates"
	sign(t, s, memberToken, "c1", map[string]any{"csr": good, "profile": "client"})
	registry := func() string {
		t.Helper()
		r := do(t, "GET", url, memberToken, nil)
		if r.Status != 200 {
			t.Fatalf("registry: %d %s", r.Status, r.Body)
		}
		return string(r.Body)
	}
	registryBefore := registry()

	tests := []struct {
		name       string
		method     string
		url        string
		token      string
		body       any
		wantStatus int
		wantCode   string
	}{
		{"malformed JSON", "POST", url, memberToken, `{"csr":`, 400, "malformed_json"},
		{"an unknown field", "POST", url, memberToken, `{"csr":"x","colour":"red"}`, 400, "unknown_field"},
		{"an empty CSR", "POST", url, memberToken, map[string]any{"csr": "", "profile": "client"}, 400, "invalid_csr"},
		{"a garbage CSR", "POST", url, memberToken, map[string]any{"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "profile": "client"}, 400, "invalid_csr"},
		{"a CSR whose signature was tampered with", "POST", url, memberToken, map[string]any{"csr": tampered, "profile": "client"}, 400, "csr_signature_invalid"},
		{"an RSA-1024 key", "POST", url, memberToken, map[string]any{"csr": newCSR(t, rsa1024, "weak", nil), "profile": "client"}, 400, "weak_key"},
		{"a P-224 key", "POST", url, memberToken, map[string]any{"csr": newCSR(t, p224, "p224", nil), "profile": "client"}, 400, "weak_key"},
		{"a CSR asking for CA:TRUE", "POST", url, memberToken, map[string]any{"csr": caCSR(t), "profile": "client"}, 400, "ca_not_allowed"},
		{"system:masters from a member", "POST", url, memberToken, map[string]any{"csr": newCSR(t, p256(t), "mallory", []string{"system:masters"}), "profile": "client"}, 403, "system_masters_requires_admin"},
		{"a server profile without SANs", "POST", url, memberToken, map[string]any{"csr": newCSR(t, p256(t), "web", nil), "profile": "server"}, 400, "missing_san"},
		{"validity beyond the CA", "POST", url, memberToken, map[string]any{"csr": good, "profile": "client", "validity_hours": 24 * 60}, 400, "validity_exceeds_ca"},
		{"an unknown profile", "POST", url, memberToken, map[string]any{"csr": good, "profile": "root"}, 400, "invalid_profile"},
		{"an unknown cluster", "POST", s.URL + "/v1/clusters/nope/certificates", memberToken, map[string]any{"csr": good, "profile": "client"}, 404, "ca_not_found"},
		{"no token", "POST", url, "", map[string]any{"csr": good, "profile": "client"}, 401, "unauthorized"},
		{"a wrong token", "POST", url, "not-a-known-token-at-all", map[string]any{"csr": good, "profile": "client"}, 401, "unauthorized"},
		{"another project's cluster", "POST", url, otherToken, map[string]any{"csr": good, "profile": "client"}, 403, "forbidden"},
		{"a reader signing", "POST", url, readerToken, map[string]any{"csr": good, "profile": "client"}, 403, "forbidden"},
		{"a 10 MB body", "POST", url, memberToken, `{"csr":"` + strings.Repeat("A", 10<<20) + `"}`, 413, "body_too_large"},
		{"a rekey by another project", "POST", s.URL + "/v1/clusters/c1/ca/rekey", otherToken, `{}`, 403, "forbidden"},
		{"a rekey with an unknown field", "POST", s.URL + "/v1/clusters/c1/ca/rekey", memberToken, `{"grace":1}`, 400, "unknown_field"},
		{"a CA with an unknown algorithm", "PUT", s.URL + "/v1/clusters/c2/ca", memberToken, `{"key_algorithm":"dsa-1024"}`, 400, "invalid_key_algorithm"},
		{"a wrong method", "DELETE", s.URL + "/v1/clusters/c1/ca", memberToken, nil, 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.method, tt.url, tt.token, tt.body)
			if r.Status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.Status, tt.wantStatus, r.Body)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q", ct)
			}
			if code := r.problemCode(t); tt.wantCode != "" && code != tt.wantCode {
				t.Errorf("code %q, want %q", code, tt.wantCode)
			}
		})
	}

	t.Run("a body that is not JSON is 415", func(t *testing.T) {
		req, err := http.NewRequest("POST", url, strings.NewReader("csr="+good))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // what curl -d sends
		req.Header.Set("Authorization", "Bearer "+memberToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		r := response{Status: resp.StatusCode, Header: resp.Header, Body: body}
		if r.Status != 415 || r.problemCode(t) != "unsupported_media_type" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})

	if got := registry(); got != registryBefore {
		t.Fatalf("bad requests changed the registry:\nbefore %s\nafter  %s", registryBefore, got)
	}
	var after caResource
	do(t, "GET", s.URL+"/v1/clusters/c1/ca", memberToken, nil).json(t, &after)
	if after.Generation != ca.Generation || after.FingerprintSHA256 != ca.FingerprintSHA256 {
		t.Fatal("bad requests changed the CA")
	}
	if r := do(t, "GET", s.URL+"/v1/clusters/c2/ca", memberToken, nil); r.Status != 404 {
		t.Fatalf("a refused create left a CA behind: %d", r.Status)
	}
}

// tamperCSR flips a bit of the CSR's subject, keeping the DER well formed,
// so that only the signature check can catch it.
func tamperCSR(t *testing.T, csrPEM string) string {
	t.Helper()
	b, _ := pem.Decode([]byte(csrPEM))
	der := append([]byte(nil), b.Bytes...)
	i := strings.Index(string(der), "node-1")
	if i < 0 {
		t.Fatal("subject not found in CSR")
	}
	der[i] ^= 0x01 // "node-1" → "ooee-1"-like, same length
	if _, err := x509.ParseCertificateRequest(der); err != nil {
		t.Fatalf("tampered CSR no longer parses: %v", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// caCSR is a CSR whose extension request asks for basicConstraints CA:TRUE.
func caCSR(t *testing.T) string {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	tmpl.Subject.CommonName = "sneaky-ca"
	// basicConstraints, critical, cA TRUE.
	tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, basicConstraintsCA())
	return csrPEM(t, p256(t), tmpl)
}

func basicConstraintsCA() pkix.Extension {
	v, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	if err != nil {
		panic(err)
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: v}
}
