package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/need"
)

// tlsChain is a 3-level PKI: root → intermediate → leaf for www.example.test.
type tlsChain struct {
	root, inter, leaf string // PEM certificates
	leafKey           *ecdsa.PrivateKey
	encryptedKey      string // PKCS#8 PBES2 (AES-256-CBC), by openssl
	passphrase        string
}

func issue(t testing.TB, tmpl *x509.Certificate, parent *x509.Certificate, pub any, signer any) (*x509.Certificate, string) {
	t.Helper()
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func newTLSChain(t testing.TB) tlsChain {
	t.Helper()
	now := time.Now()
	rootKey, interKey, leafKey := p256(t), p256(t), p256(t)
	ca := func(cn string, serial int64) *x509.Certificate {
		return &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
	}
	rootCert, rootPEM := issue(t, ca("e2e root", 1), nil, &rootKey.PublicKey, rootKey)
	interCert, interPEM := issue(t, ca("e2e intermediate", 2), rootCert, &interKey.PublicKey, rootKey)
	_, leafPEM := issue(t, &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "www.example.test"},
		DNSNames:  []string{"www.example.test"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, interCert, &leafKey.PublicKey, interKey)

	c := tlsChain{root: rootPEM, inter: interPEM, leaf: leafPEM, leafKey: leafKey, passphrase: "e2e-passphrase"}
	need.Tool(t, "openssl", "apt-get install openssl (or make deps)")
	der, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plain := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(plain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("openssl", "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", plain, "-passout", "env:E2E_PASS")
	cmd.Env = append(os.Environ(), "E2E_PASS="+c.passphrase)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl pkcs8: %v", err)
	}
	c.encryptedKey = string(out)
	return c
}

type validation struct {
	Valid  bool `json:"valid"`
	Errors []struct {
		Code  string `json:"code"`
		Field string `json:"field"`
	} `json:"errors"`
	Warnings []struct {
		Code string `json:"code"`
	} `json:"warnings"`
	ChainPEM string `json:"chain_pem"`
}

func (v validation) codes() []string {
	var out []string
	for _, e := range v.Errors {
		out = append(out, e.Code)
	}
	for _, w := range v.Warnings {
		out = append(out, w.Code)
	}
	slices.Sort(out)
	return out
}

// TestValidateThroughTheGateway sends bundles through the running service:
// a good one in the worst input form (encrypted PKCS#8, intermediates in
// the wrong order) and bad ones that must report every reason.
func TestValidateThroughTheGateway(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := newTLSChain(t)
	other := p256(t)
	otherDER, _ := x509.MarshalPKCS8PrivateKey(other)
	otherPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: otherDER}))
	tests := []struct {
		name       string
		body       map[string]any
		wantStatus int
		wantCodes  []string
	}{
		{"a complete bundle with an encrypted key is valid", map[string]any{
			"certificate": c.leaf, "private_key": c.encryptedKey, "passphrase": c.passphrase,
			"intermediates": c.inter, "ca_bundle": c.root, "hostname": "www.example.test"}, 200, nil},
		{"a missing passphrase is needs_passphrase", map[string]any{
			"certificate": c.leaf, "private_key": c.encryptedKey, "intermediates": c.inter}, 400, []string{"needs_passphrase"}},
		{"a wrong passphrase is bad_passphrase", map[string]any{
			"certificate": c.leaf, "private_key": c.encryptedKey, "passphrase": "nope", "intermediates": c.inter}, 400, []string{"bad_passphrase"}},
		{"a missing intermediate differs from an untrusted root", map[string]any{
			"certificate": c.leaf, "private_key": otherPEM, "ca_bundle": c.root, "hostname": "other.example.test"},
			400, []string{"chain_incomplete", "hostname_mismatch", "key_mismatch"}},
		{"a complete chain to another root is untrusted_root", map[string]any{
			"certificate": c.leaf, "private_key": c.encryptedKey, "passphrase": c.passphrase,
			"intermediates": c.inter + c.root, "ca_bundle": newTLSChain(t).root}, 400, []string{"root_in_intermediates", "untrusted_root"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, "POST", s.URL+"/v1/tls/validate", memberToken, tt.body)
			var v validation
			r.json(t, &v)
			if r.Status != tt.wantStatus || v.Valid != (tt.wantStatus == 200) {
				t.Fatalf("status %d valid %v: %s", r.Status, v.Valid, r.Body)
			}
			if got := v.codes(); !slices.Equal(got, tt.wantCodes) {
				t.Fatalf("codes %v, want %v", got, tt.wantCodes)
			}
			if bytes.Contains(r.Body, []byte(c.passphrase)) || bytes.Contains(r.Body, []byte("PRIVATE KEY")) {
				t.Fatal("the report echoes secret material")
			}
		})
	}
}

// BenchmarkValidateThroughLocalrun is the issue's load run: a 3-level chain
// with an encrypted PKCS#8 key, validated through a running localrun serve
// by 8 clients. It reports req/s, p50 and p99.
func BenchmarkValidateThroughLocalrun(b *testing.B) {
	s := startServer(b, serverOpts{})
	c := newTLSChain(b)
	body, _ := json.Marshal(map[string]any{
		"certificate": c.leaf, "private_key": c.encryptedKey, "passphrase": c.passphrase,
		"intermediates": c.inter, "ca_bundle": c.root, "hostname": "www.example.test",
	})
	loadRun(b, s.URL+"/v1/tls/validate", body, http.StatusOK)
}

// loadRun sends b.N POSTs of body from 8 concurrent clients and reports
// throughput and latency percentiles.
func loadRun(b *testing.B, url string, body []byte, want int) {
	const clients = 8
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var next, failed atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+adminToken)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				var sink bytes.Buffer
				_, _ = sink.ReadFrom(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want {
					failed.Add(1)
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d requests failed", n, b.N)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
