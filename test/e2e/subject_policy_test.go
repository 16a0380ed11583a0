package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"unicode/utf16"
)

// bmpStringCNCSR returns a CSR whose subject is one CN encoded as a
// BMPString (UTF-16BE), which pkix.Name never writes.
func bmpStringCNCSR(t *testing.T, cn string) string {
	t.Helper()
	var b []byte
	for _, u := range utf16.Encode([]rune(cn)) {
		b = append(b, byte(u>>8), byte(u))
	}
	atv, err := asn1.Marshal(struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue
	}{asn1.ObjectIdentifier{2, 5, 4, 3}, asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagBMPString, Bytes: b}})
	if err != nil {
		t.Fatal(err)
	}
	set, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: atv})
	if err != nil {
		t.Fatal(err)
	}
	subject, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: set})
	if err != nil {
		t.Fatal(err)
	}
	return csrPEM(t, p256(t), &x509.CertificateRequest{RawSubject: subject})
}

// exponent3CSR returns a CSR for a 2048-bit RSA key whose public exponent
// is 3, which crypto/rsa never generates.
func exponent3CSR(t *testing.T) string {
	t.Helper()
	one, e := big.NewInt(1), big.NewInt(3)
	for {
		p, err := rand.Prime(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		q, err := rand.Prime(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
		d := new(big.Int).ModInverse(e, phi)
		n := new(big.Int).Mul(p, q)
		if d == nil || p.Cmp(q) == 0 || n.BitLen() != 2048 {
			continue
		}
		k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: 3}, D: d, Primes: []*big.Int{p, q}}
		k.Precompute()
		return csrPEM(t, k, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice"}})
	}
}

// TestSubjectPolicy: through the real localrun binary, a member gets none
// of the identities Kubernetes treats as powerful, natively or through
// Magnum's POST /v1/certificates; an admin gets them, logged and marked in
// the registry; nobody gets control characters, *.com or RSA exponent 3.
func TestSubjectPolicy(t *testing.T) {
	const publicURL = "https://keys.example.com"
	s := startServer(t, serverOpts{args: []string{"--public-url", publicURL}})
	const cluster = "0c8e3d3a-policy-e2e"
	createCA(t, s, memberToken, cluster, nil)
	native := s.URL + "/v1/clusters/" + cluster + "/certificates"
	magnum := s.URL + "/v1/certificates"

	type attempt struct {
		name string
		csr  string
	}
	privileged := []attempt{
		{"O=kubeadm:cluster-admins", newCSR(t, p256(t), "alice", []string{"kubeadm:cluster-admins"})},
		{"CN=system:kube-controller-manager", newCSR(t, p256(t), "system:kube-controller-manager", nil)},
		{"CN=system:kube-scheduler", newCSR(t, p256(t), "system:kube-scheduler", nil)},
		{"CN=system:node:n1,O=system:nodes", newCSR(t, p256(t), "system:node:n1", []string{"system:nodes"})},
		{"CN=system:serviceaccount:kube-system:default", newCSR(t, p256(t), "system:serviceaccount:kube-system:default", nil)},
		{"CN= System:Foo  in another case with spaces", newCSR(t, p256(t), " System:Foo ", nil)},
		{"a BMPString CN=system:kube-scheduler", bmpStringCNCSR(t, "system:kube-scheduler")},
	}

	t.Run("a member is refused every privileged subject on both routes", func(t *testing.T) {
		for _, a := range privileged {
			r := do(t, "POST", native, memberToken, map[string]string{"csr": a.csr})
			if r.Status != http.StatusForbidden || r.problemCode(t) != "subject_not_allowed" {
				t.Errorf("native %s: %d %s, want 403 subject_not_allowed", a.name, r.Status, r.Body)
			}
			if !strings.Contains(string(r.Body), `"field":"csr"`) {
				t.Errorf("native %s: the refusal does not name the csr field: %s", a.name, r.Body)
			}
			r = do(t, "POST", magnum, memberToken, map[string]string{"cluster_uuid": cluster, "csr": a.csr})
			// Magnum's format: the stable code leads the title.
			var m struct {
				Errors []struct {
					Title  string `json:"title"`
					Status int    `json:"status"`
				} `json:"errors"`
			}
			r.json(t, &m)
			if r.Status != http.StatusForbidden || len(m.Errors) != 1 || !strings.HasPrefix(m.Errors[0].Title, "subject_not_allowed:") {
				t.Errorf("magnum %s: %d %s, want 403 subject_not_allowed", a.name, r.Status, r.Body)
			}
		}
		r := do(t, "POST", native, memberToken, map[string]string{"csr": newCSR(t, p256(t), "alice", []string{"system:masters"})})
		if r.Status != http.StatusForbidden || r.problemCode(t) != "system_masters_requires_admin" {
			t.Errorf("O=system:masters: %d %s, want its own code kept", r.Status, r.Body)
		}
	})

	var privSerials []string
	t.Run("an admin gets them, logged and marked privileged", func(t *testing.T) {
		node := newCSR(t, p256(t), "system:node:n1", []string{"system:nodes"})
		r := do(t, "POST", native, adminToken, map[string]any{"csr": node, "profile": "client"})
		if r.Status != http.StatusCreated {
			t.Fatalf("native: %d %s", r.Status, r.Body)
		}
		var out signed
		r.json(t, &out)
		privSerials = append(privSerials, out.Serial)
		r = do(t, "POST", magnum, adminToken, map[string]string{"cluster_uuid": cluster, "csr": newCSR(t, p256(t), "system:kube-scheduler", nil)})
		if r.Status != http.StatusCreated {
			t.Fatalf("magnum: %d %s", r.Status, r.Body)
		}
		var mc struct{ PEM string }
		r.json(t, &mc)
		c := parseCert(t, mc.PEM)
		privSerials = append(privSerials, hex.EncodeToString(c.SerialNumber.Bytes())) // as the registry writes it
		plain := sign(t, s, memberToken, cluster, map[string]string{"csr": newCSR(t, p256(t), "alice", []string{"dev"})})

		r = do(t, "GET", native, readerToken, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("list: %d %s", r.Status, r.Body)
		}
		var list struct {
			Certificates []struct {
				Serial     string `json:"serial"`
				Subject    string `json:"subject"`
				Privileged *bool  `json:"privileged"`
			} `json:"certificates"`
		}
		r.json(t, &list)
		want := map[string]bool{privSerials[0]: true, privSerials[1]: true, plain.Serial: false}
		seen := 0
		for _, c := range list.Certificates {
			w, ok := want[c.Serial]
			if !ok {
				continue
			}
			seen++
			if c.Privileged == nil || *c.Privileged != w {
				t.Errorf("%s (%s): privileged %v, want %v", c.Serial, c.Subject, c.Privileged, w)
			}
		}
		if seen != len(want) {
			t.Errorf("%d of %d certificates listed: %s", seen, len(want), r.Body)
		}
		for _, serial := range privSerials {
			if !logHas(s, "privileged certificate issued", serial, "user=root", "cluster="+cluster) {
				t.Errorf("no warning names privileged serial %s; logs:\n%s", serial, s.out.String())
			}
		}
		if logHas(s, "privileged certificate issued", plain.Serial) {
			t.Error("an ordinary certificate was logged as privileged")
		}
	})

	t.Run("nobody gets control characters, a wildcard under a public suffix or RSA exponent 3", func(t *testing.T) {
		for _, tt := range []struct {
			name     string
			body     map[string]string
			wantCode string
		}{
			{"a newline in the CN", map[string]string{"csr": newCSR(t, p256(t), "alice\nbob", nil)}, "subject_not_allowed"},
			{"an escape in an O", map[string]string{"csr": newCSR(t, p256(t), "alice", []string{"dev\x1b[2J"})}, "subject_not_allowed"},
			{"a C1 control in the CN", map[string]string{"csr": newCSR(t, p256(t), "alice\u009b", nil)}, "subject_not_allowed"},
			{"*.com", map[string]string{"csr": newCSR(t, p256(t), "web", nil, "*.com"), "profile": "server"}, "subject_not_allowed"},
			{"*.co.uk", map[string]string{"csr": newCSR(t, p256(t), "web", nil, "*.co.uk"), "profile": "peer"}, "subject_not_allowed"},
			{"RSA exponent 3", map[string]string{"csr": exponent3CSR(t)}, "unsupported_key"},
		} {
			for _, token := range []string{memberToken, adminToken} {
				r := do(t, "POST", native, token, tt.body)
				if r.Status != http.StatusBadRequest || r.problemCode(t) != tt.wantCode {
					t.Errorf("%s: %d %s, want 400 %s", tt.name, r.Status, r.Body, tt.wantCode)
				}
			}
		}
		r := do(t, "POST", native, memberToken, map[string]string{"csr": newCSR(t, p256(t), "web", nil, "*.apps.example.com"), "profile": "server"})
		if r.Status != http.StatusCreated {
			t.Errorf("*.apps.example.com: %d %s", r.Status, r.Body)
		}
	})

	t.Run("Magnum links come from --public-url, not from forged headers", func(t *testing.T) {
		body := `{"cluster_uuid":"` + cluster + `","csr":` + jsonString(newCSR(t, p256(t), "alice", nil)) + `}`
		for _, rq := range []struct{ method, url, body string }{
			{"POST", magnum, body},
			{"GET", magnum + "/" + cluster, ""},
			{"GET", s.URL + "/v1/clusters/" + cluster, ""},
		} {
			req, err := http.NewRequest(rq.method, rq.url, strings.NewReader(rq.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "evil.example"
			req.Header.Set("X-Forwarded-Proto", "https")
			req.Header.Set("X-Forwarded-Host", "evil.example")
			req.Header.Set("Authorization", "Bearer "+memberToken)
			if rq.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var out struct {
				Links []struct{ Href, Rel string }
			}
			r := readResponse(t, resp)
			r.json(t, &out)
			if r.Status >= 300 || len(out.Links) != 2 || strings.Contains(string(r.Body), "evil") {
				t.Fatalf("%s %s: %d %s", rq.method, rq.url, r.Status, r.Body)
			}
			for _, l := range out.Links {
				if !strings.HasPrefix(l.Href, publicURL+"/") {
					t.Errorf("%s %s: link %s does not start with --public-url", rq.method, rq.url, l.Href)
				}
			}
		}
	})

	t.Run("a body needs a JSON Content-Type; a PATCH without one still rotates", func(t *testing.T) {
		body := `{"csr":` + jsonString(newCSR(t, p256(t), "alice", nil)) + `}`
		for _, url := range []string{native, magnum} {
			b := body
			if url == magnum {
				b = `{"cluster_uuid":"` + cluster + `","csr":` + jsonString(newCSR(t, p256(t), "alice", nil)) + `}`
			}
			req, err := http.NewRequest("POST", url, strings.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+memberToken)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if r := readResponse(t, resp); r.Status != http.StatusUnsupportedMediaType {
				t.Errorf("POST %s without Content-Type: %d %s, want 415", url, r.Status, r.Body)
			}
		}
		req, err := http.NewRequest("PATCH", magnum+"/"+cluster, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+memberToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if r := readResponse(t, resp); r.Status != http.StatusAccepted {
			t.Errorf("PATCH without a body: %d %s, want 202", r.Status, r.Body)
		}
	})
}

// logHas reports whether one line of the server's log holds every part.
func logHas(s *server, parts ...string) bool {
	for line := range strings.SplitSeq(s.out.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// jsonString returns s as a JSON string literal.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// readResponse reads and closes resp.
func readResponse(t *testing.T, resp *http.Response) response {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}
