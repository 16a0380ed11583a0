package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// post sends a JSON body to Barbican as project (or, with a "token:"
// prefix, with that Keystone token) and returns the *_ref field.
func (b *barbican) post(t testing.TB, project, path string, body any) string {
	t.Helper()
	j, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", b.URL+path, bytes.NewReader(j))
	if tok, ok := strings.CutPrefix(project, "token:"); ok {
		req.Header.Set("X-Auth-Token", tok)
	} else {
		req.Header.Set("X-Project-Id", project)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 201 {
		t.Fatalf("Barbican POST %s: %d %v", path, resp.StatusCode, out)
	}
	for k, v := range out {
		if strings.HasSuffix(k, "_ref") {
			return v
		}
	}
	t.Fatalf("Barbican POST %s returned no ref: %v", path, out)
	return ""
}

func (b *barbican) textSecret(t testing.TB, project, name, payload, secretType string) string {
	t.Helper()
	return b.post(t, project, "/v1/secrets", map[string]any{
		"name": name, "payload": payload, "payload_content_type": "text/plain", "secret_type": secretType,
	})
}

// tlsContainer stores a certificate container as Octavia expects it.
func (b *barbican) tlsContainer(t testing.TB, project string, c tlsChain, key string) string {
	t.Helper()
	refs := []map[string]string{
		{"name": "certificate", "secret_ref": b.textSecret(t, project, "cert", c.leaf, "certificate")},
		{"name": "private_key", "secret_ref": b.textSecret(t, project, "key", key, "private")},
		{"name": "intermediates", "secret_ref": b.textSecret(t, project, "inter", c.inter, "certificate")},
		{"name": "private_key_passphrase", "secret_ref": b.textSecret(t, project, "pass", c.passphrase, "passphrase")},
	}
	return b.post(t, project, "/v1/containers", map[string]any{"name": "tls", "type": "certificate", "secret_refs": refs})
}

// TestValidateByContainerRef validates TLS bundles stored in Barbican, as
// Octavia stores them, by container_ref.
func TestValidateByContainerRef(t *testing.T) {
	b := startBarbican(t)
	s := startServer(t, serverOpts{args: []string{"--barbican-endpoint", b.URL}})
	c := newTLSChain(t)
	good := b.tlsContainer(t, "team-a", c, c.encryptedKey)
	wrongKey := b.tlsContainer(t, "team-a", c, newTLSChain(t).encryptedKey)
	foreign := b.tlsContainer(t, "team-b", c, c.encryptedKey)

	// A PKCS#12 bundle as a single secret.
	dir := t.TempDir()
	for name, content := range map[string]string{"leaf.pem": c.leaf, "inter.pem": c.inter, "key.pem": c.encryptedKey} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("openssl", "pkcs12", "-export", "-in", "leaf.pem", "-inkey", "key.pem", "-certfile", "inter.pem",
		"-passin", "env:E2E_PASS", "-passout", "pass:")
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "E2E_PASS="+c.passphrase)
	p12, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl pkcs12: %v", err)
	}
	p12Ref := b.post(t, "team-a", "/v1/secrets", map[string]any{
		"name": "p12", "payload": base64.StdEncoding.EncodeToString(p12), "payload_content_type": "application/octet-stream",
		"payload_content_encoding": "base64", "secret_type": "opaque",
	})

	tests := []struct {
		name       string
		ref        string
		wantStatus int
		wantCodes  []string
		problem    string
	}{
		{"a good certificate container is valid", good, 200, nil, ""},
		{"a bare container id works too", good[strings.LastIndex(good, "/")+1:], 200, nil, ""},
		{"a PKCS#12 secret is valid", p12Ref, 200, nil, ""},
		{"a container whose key does not match says so", wrongKey, 400, []string{"key_mismatch"}, ""},
		{"another project's container is forbidden", foreign, 403, nil, "forbidden"},
		{"a missing container is not found", b.URL + "/v1/containers/00000000-0000-4000-8000-000000000000", 404, nil, "not_found"},
		{"a ref to another host is refused", "http://169.254.169.254/v1/containers/00000000-0000-4000-8000-000000000000", 400, nil, "container_ref_unsupported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, "POST", s.URL+"/v1/tls/validate", memberToken, map[string]any{"container_ref": tt.ref})
			if r.Status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.Status, tt.wantStatus, r.Body)
			}
			if tt.problem != "" {
				if code := r.problemCode(t); code != tt.problem {
					t.Fatalf("code %q, want %q", code, tt.problem)
				}
				return
			}
			var v validation
			r.json(t, &v)
			if got := v.codes(); !slices.Equal(got, tt.wantCodes) {
				t.Fatalf("codes %v, want %v", got, tt.wantCodes)
			}
			if bytes.Contains(r.Body, []byte(c.passphrase)) {
				t.Fatal("the report echoes the stored passphrase")
			}
		})
	}
}
