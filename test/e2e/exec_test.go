package e2e

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

// TestExecRunsTheRealBootstraps serves every function from its built
// bootstrap behind localrun's Lambda Runtime API and drives each through
// the front router, as API Gateway would.
func TestExecRunsTheRealBootstraps(t *testing.T) {
	s := startServer(t, serverOpts{args: []string{"--exec", "--bin-dir", filepath.Join(binDir, "lambda")}})

	ca := createCA(t, s, memberToken, "lambda-1", map[string]any{"key_algorithm": "ecdsa-p384"})
	if ca.KeyAlgorithm != "ecdsa-p384" {
		t.Fatalf("CA = %+v", ca)
	}
	cert := sign(t, s, memberToken, "lambda-1", map[string]any{
		"csr": newCSR(t, p256(t), "node-1", nil, "node-1.lambda.example"), "profile": "server",
	})
	if got := parseCert(t, cert.Certificate).DNSNames; len(got) != 1 || got[0] != "node-1.lambda.example" {
		t.Fatalf("server certificate SANs = %v", got)
	}
	r := do(t, "POST", s.URL+"/v1/clusters/lambda-1/ca/rekey", memberToken, map[string]any{"expected_generation": 1})
	if r.Status != 200 {
		t.Fatalf("rekey through the bootstrap: %d %s", r.Status, r.Body)
	}

	t.Run("errors keep their format through the runtime", func(t *testing.T) {
		r := do(t, "POST", s.URL+"/v1/clusters/lambda-1/certificates", memberToken, `{"csr":"x","bogus":1}`)
		if r.Status != 400 || r.problemCode(t) != "unknown_field" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		r = do(t, "POST", s.URL+"/v1/clusters/lambda-1/certificates", "", `{}`)
		if r.Status != 401 {
			t.Fatalf("no token through the bootstrap: %d", r.Status)
		}
	})

	t.Run("the key-wrap bootstrap wraps and unwraps", func(t *testing.T) {
		r := do(t, "POST", s.URL+"/v1/keys", memberToken, map[string]any{"name": "etcd-kek"})
		if r.Status != 201 {
			t.Fatalf("create key: %d %s", r.Status, r.Body)
		}
		pt := base64.StdEncoding.EncodeToString([]byte("a data key of 32 bytes, exactly."))
		r = do(t, "POST", s.URL+"/v1/keys/etcd-kek/wrap", memberToken, map[string]any{"plaintext": pt})
		var w struct {
			Ciphertext string `json:"ciphertext"`
		}
		r.json(t, &w)
		r = do(t, "POST", s.URL+"/v1/keys/etcd-kek/unwrap", memberToken, map[string]any{"ciphertext": w.Ciphertext})
		var u struct {
			Plaintext string `json:"plaintext"`
		}
		r.json(t, &u)
		if r.Status != 200 || u.Plaintext != pt {
			t.Fatalf("unwrap: %d %s", r.Status, r.Body)
		}
	})

	t.Run("one request id from the front gateway to the bootstrap's answer", func(t *testing.T) {
		r := do(t, "POST", s.URL+"/v1/clusters/lambda-1/certificates", memberToken, `{"csr":`)
		var p struct {
			RequestID string `json:"request_id"`
		}
		r.json(t, &p)
		if r.Status != 400 || p.RequestID == "" || p.RequestID != r.Header.Get("X-Request-Id") {
			t.Fatalf("body request_id %q, header %q: %d %s", p.RequestID, r.Header.Get("X-Request-Id"), r.Status, r.Body)
		}
	})
	t.Run("the validate bootstrap answers", func(t *testing.T) {
		// A certificate without its key: the bootstrap must read the leaf
		// and say exactly that the key is missing.
		r := do(t, "POST", s.URL+"/v1/tls/validate", memberToken, map[string]any{"certificate": cert.Certificate})
		var v struct {
			Valid  bool `json:"valid"`
			Errors []struct {
				Code string `json:"code"`
			} `json:"errors"`
			Certificate *struct {
				Serial string `json:"serial"`
			} `json:"certificate"`
		}
		r.json(t, &v)
		if r.Status != 400 || v.Valid || len(v.Errors) != 1 || v.Errors[0].Code != "key_missing" {
			t.Fatalf("validate a certificate without its key: %d %s", r.Status, r.Body)
		}
		if v.Certificate == nil || !strings.EqualFold(strings.TrimLeft(v.Certificate.Serial, "0"), strings.TrimLeft(cert.Serial, "0")) {
			t.Fatalf("the report describes another leaf: %s (signed serial %s)", r.Body, cert.Serial)
		}
	})
}

// TestInvokeOneEvent runs HTTP API events through single functions with
// localrun invoke, as `sam local invoke` would.
func TestInvokeOneEvent(t *testing.T) {
	state := t.TempDir()
	writeTokens(t, state, testTokens...)
	invoke := func(fn string, ev events.APIGatewayV2HTTPRequest) events.APIGatewayV2HTTPResponse {
		t.Helper()
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "event.json")
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(filepath.Join(binDir, "localrun"), "invoke", fn, "--event", file,
			"--state-dir", state, "--log-level", "warn").Output()
		if err != nil {
			t.Fatalf("localrun invoke %s: %v", fn, err)
		}
		var resp events.APIGatewayV2HTTPResponse
		if err := json.Unmarshal(out, &resp); err != nil {
			t.Fatalf("invoke output %s: %v", out, err)
		}
		return resp
	}
	event := func(method, path, body string) events.APIGatewayV2HTTPRequest {
		return events.APIGatewayV2HTTPRequest{
			Version: "2.0", RouteKey: "$default", RawPath: path,
			Headers: map[string]string{"authorization": "Bearer " + memberToken, "content-type": "application/json"},
			Body:    body,
			RequestContext: events.APIGatewayV2HTTPRequestContext{
				RequestID: "e2e-invoke-1", Stage: "$default",
				HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: method, Path: path, Protocol: "HTTP/1.1", SourceIP: "127.0.0.1"},
			},
		}
	}
	resp := invoke("rekeycluster", event("PUT", "/v1/clusters/ev-1/ca", `{}`))
	if resp.StatusCode != 201 || !strings.Contains(resp.Body, `"generation"`) {
		t.Fatalf("rekeycluster create: %d %s", resp.StatusCode, resp.Body)
	}
	csr, _ := json.Marshal(map[string]string{"csr": newCSR(t, p256(t), "alice", nil), "profile": "client"})
	resp = invoke("signcsr", event("POST", "/v1/clusters/ev-1/certificates", string(csr)))
	if resp.StatusCode != 201 || !strings.Contains(resp.Body, "BEGIN CERTIFICATE") {
		t.Fatalf("signcsr: %d %s", resp.StatusCode, resp.Body)
	}
	resp = invoke("signcsr", event("PUT", "/v1/clusters/ev-1/ca", `{}`))
	if resp.StatusCode != 404 && resp.StatusCode != 405 {
		t.Fatalf("signcsr served a rekey-cluster route: %d", resp.StatusCode)
	}
}

// TestServePrintsANewAdminToken is `make run` on a fresh machine: no token
// file, so localrun creates one, prints its token once and it works.
func TestServePrintsANewAdminToken(t *testing.T) {
	s := startServer(t, serverOpts{generateToken: true})
	if r := do(t, "PUT", s.URL+"/v1/clusters/first/ca", s.Token, `{}`); r.Status != 201 {
		t.Fatalf("the printed token does not work: %d %s", r.Status, r.Body)
	}
	fi, err := os.Stat(filepath.Join(s.StateDir, "tokens.csv"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	for _, name := range []string{"master.key"} {
		fi, err := os.Stat(filepath.Join(s.StateDir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", name, fi, err)
		}
	}
	if strings.Contains(s.out.String(), s.Token) {
		t.Fatal("the admin token reached the log")
	}
}
