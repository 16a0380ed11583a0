package e2e

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/testproc"
)

// keystoneTokenLifetime is short so that the expired-token case is quick.
const keystoneTokenLifetime = 10 * time.Second

// keystone is Debian's Keystone on loopback, shared by the package's tests
// (its first set-up takes about a minute).
type keystone struct {
	URL string // .../v3
	dir string
	err error
}

var (
	sharedKeystone     keystone
	sharedKeystoneOnce sync.Once
)

func startKeystone(t *testing.T) *keystone {
	t.Helper()
	_, err := os.Stat("/usr/bin/keystone-manage")
	installOrMissing(t, err == nil, "keystone.sh", "Keystone is missing: apt-get install python3-keystone python3-keystoneclient uwsgi-core uwsgi-plugin-python3 (or make deps)")
	sharedKeystoneOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ck-keystone")
		if err != nil {
			sharedKeystone.err = err
			return
		}
		port := strings.TrimPrefix(testproc.FreeAddr(t), "127.0.0.1:")
		start := time.Now()
		cmd := scriptCmd("keystone.sh", "start", dir, port)
		cmd.Env = append(os.Environ(), fmt.Sprintf("KEYSTONE_TOKEN_EXPIRATION=%d", int(keystoneTokenLifetime.Seconds())))
		out, err := cmd.Output()
		if err != nil {
			sharedKeystone.err = fmt.Errorf("keystone.sh start: %v", err)
			return
		}
		fmt.Fprintf(os.Stderr, "e2e: Keystone set up and started in %v\n", time.Since(start).Round(time.Millisecond))
		sharedKeystone.URL, sharedKeystone.dir = strings.TrimSpace(string(out)), dir
		atExit = append(atExit, func() {
			_ = scriptCmd("keystone.sh", "stop", dir).Run()
			os.RemoveAll(dir)
		})
	})
	if sharedKeystone.err != nil {
		t.Fatal(sharedKeystone.err)
	}
	return &sharedKeystone
}

// token logs user in to project and returns the Keystone token.
func (k *keystone) token(t *testing.T, user, project string) string {
	t.Helper()
	body := fmt.Sprintf(`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":%q,"domain":{"id":"default"},"password":%q}}},
		"scope":{"project":{"name":%q,"domain":{"id":"default"}}}}}`, user, user+"pw", project)
	resp, err := client.Post(k.URL+"/auth/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("log in %s: %d", user, resp.StatusCode)
	}
	return resp.Header.Get("X-Subject-Token")
}

func (k *keystone) revoke(t *testing.T, tok string) {
	t.Helper()
	req, _ := http.NewRequest("DELETE", k.URL+"/auth/tokens", nil)
	req.Header.Set("X-Auth-Token", tok)
	req.Header.Set("X-Subject-Token", tok)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
}

// keystoneServer starts localrun with --auth keystone and the service user
// svc from a clouds.yaml of its own.
func keystoneServer(t *testing.T, k *keystone, extra ...string) *server {
	t.Helper()
	cloudsYAML := filepath.Join(t.TempDir(), "clouds.yaml")
	content := fmt.Sprintf("clouds:\n  ck:\n    auth:\n      auth_url: %s\n      username: svc\n      password: svcpw\n"+
		"      project_name: service\n      user_domain_name: Default\n      project_domain_name: Default\n    region_name: RegionOne\n", k.URL)
	if err := os.WriteFile(cloudsYAML, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServer(t, serverOpts{
		args: append([]string{"--auth", "keystone", "--os-cloud", "ck", "--auth-cache-ttl", "1s"}, extra...),
		env:  []string{"OS_CLIENT_CONFIG_FILE=" + cloudsYAML},
	})
}

// TestKeystoneAuthentication maps Keystone tokens onto the policy: project
// and roles, revocation and expiry, and fails closed without Keystone.
func TestKeystoneAuthentication(t *testing.T) {
	k := startKeystone(t)
	s := keystoneServer(t, k)
	alice := k.token(t, "alice", "team-a")
	if r := do(t, "PUT", s.URL+"/v1/clusters/ks-1/ca", alice, `{}`); r.Status != 201 {
		t.Fatalf("a member creates a CA in her project: %d %s", r.Status, r.Body)
	}
	tests := []struct {
		name   string
		user   string
		proj   string
		method string
		path   string
		body   any
		want   int
	}{
		{"a reader of the project shows the CA", "rita", "team-a", "GET", "/v1/clusters/ks-1/ca", nil, 200},
		{"a reader may not sign", "rita", "team-a", "POST", "/v1/clusters/ks-1/certificates", map[string]any{"csr": "x"}, 403},
		{"a member of another project may not see it", "bob", "team-b", "GET", "/v1/clusters/ks-1/ca", nil, 403},
		{"a role clusterkeys does not know gives nothing", "olga", "team-a", "GET", "/v1/clusters/ks-1/ca", nil, 403},
		{"the member signs", "alice", "team-a", "POST", "/v1/clusters/ks-1/certificates", map[string]any{"csr": newCSR(t, p256(t), "alice", nil), "profile": "client"}, 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := do(t, tt.method, s.URL+tt.path, k.token(t, tt.user, tt.proj), tt.body); r.Status != tt.want {
				t.Fatalf("%d, want %d: %s", r.Status, tt.want, r.Body)
			}
		})
	}
	t.Run("a token Keystone never issued is 401", func(t *testing.T) {
		if r := do(t, "GET", s.URL+"/v1/clusters/ks-1/ca", "gAAAAABnot-a-real-token", nil); r.Status != 401 {
			t.Fatalf("%d", r.Status)
		}
	})
	t.Run("a revoked token stops working once the short cache lapses", func(t *testing.T) {
		tok := k.token(t, "alice", "team-a")
		if r := do(t, "GET", s.URL+"/v1/clusters/ks-1/ca", tok, nil); r.Status != 200 {
			t.Fatalf("before revocation: %d", r.Status)
		}
		k.revoke(t, tok)
		time.Sleep(1500 * time.Millisecond) // --auth-cache-ttl 1s
		if r := do(t, "GET", s.URL+"/v1/clusters/ks-1/ca", tok, nil); r.Status != 401 {
			t.Fatalf("after revocation: %d", r.Status)
		}
	})
	t.Run("an expired token is 401", func(t *testing.T) {
		tok := k.token(t, "alice", "team-a")
		time.Sleep(keystoneTokenLifetime + time.Second)
		if r := do(t, "GET", s.URL+"/v1/clusters/ks-1/ca", tok, nil); r.Status != 401 {
			t.Fatalf("%d", r.Status)
		}
	})
}

// TestMagnumClientThroughKeystone is `openstack coe ca` end to end:
// python-magnumclient logs in to Keystone with a password and drives the
// Magnum-compatible routes with the token Keystone issued.
func TestMagnumClientThroughKeystone(t *testing.T) {
	requireMagnumClient(t)
	k := startKeystone(t)
	s := keystoneServer(t, k)
	const cluster = "7f0f3c3e-4c5e-4a53-9d5b-2b8f3f1b6a10"
	alice := k.token(t, "alice", "team-a")
	first := createCA(t, s, alice, cluster, nil)
	csrFile := filepath.Join(t.TempDir(), "csr.pem")
	if err := os.WriteFile(csrFile, []byte(newCSR(t, p256(t), "alice", nil)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(debianPython, "testdata/magnum_client.py", s.URL+"/v1", "keystone", cluster, csrFile)
	cmd.Env = append(os.Environ(), "OS_AUTH_URL="+k.URL, "OS_USERNAME=alice", "OS_PASSWORD=alicepw", "OS_PROJECT_NAME=team-a")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("magnum client through Keystone: %v\n%s", err, stderr.String())
	}
	var got struct {
		CAPEM        string `json:"ca_pem"`
		CertPEM      string `json:"cert_pem"`
		RotatedCAPEM string `json:"rotated_ca_pem"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(got.CAPEM) != strings.TrimSpace(first.Certificate) || got.CertPEM == "" || got.RotatedCAPEM == got.CAPEM {
		t.Fatalf("magnum client saw %+v", got)
	}
}

// TestBarbicanCustodyThroughKeystone keeps CA keys in a Barbican that
// authenticates with Keystone: clusterkeys uses its service user's token,
// and the keys belong to its service project.
func TestBarbicanCustodyThroughKeystone(t *testing.T) {
	k := startKeystone(t)
	b := startBarbican(t, "BARBICAN_KEYSTONE_URL="+k.URL)
	s := keystoneServer(t, k, "--keys", "barbican", "--barbican-endpoint", b.URL)
	alice := k.token(t, "alice", "team-a")
	ca := createCA(t, s, alice, "ks-bb", nil)
	// Tokens here live 10 s and a create through Barbican on a loaded
	// host can take most of that: sign with a fresh one.
	alice = k.token(t, "alice", "team-a")
	c := sign(t, s, alice, "ks-bb", map[string]any{"csr": newCSR(t, p256(t), "alice", nil), "profile": "client"})
	if err := verifies(t, c.Certificate, ca.TrustBundle, x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatal(err)
	}
	// Barbican itself refuses anyone without a token: the keys are not
	// reachable by project header alone.
	req, _ := http.NewRequest("GET", b.URL+"/v1/secrets", nil)
	req.Header.Set("X-Project-Id", "service")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("Barbican without a token answered %d", resp.StatusCode)
	}

	t.Run("container_ref is read with the caller's own Keystone token", func(t *testing.T) {
		alice := k.token(t, "alice", "team-a") // fresh: tokens here live 10 s
		chain := newTLSChain(t)
		ref := b.tlsContainer(t, "token:"+alice, chain, chain.encryptedKey)
		r := do(t, "POST", s.URL+"/v1/tls/validate", alice, map[string]any{"container_ref": ref})
		if r.Status != 200 {
			t.Fatalf("the owner validates her container: %d %s", r.Status, r.Body)
		}
		r = do(t, "POST", s.URL+"/v1/tls/validate", k.token(t, "bob", "team-b"), map[string]any{"container_ref": ref})
		if r.Status != 403 || r.problemCode(t) != "forbidden" {
			t.Fatalf("another project's user: %d %s", r.Status, r.Body)
		}
	})
	t.Run("Barbican refusing clusterkeys' credentials is a 502 that says why", func(t *testing.T) {
		// clusterkeys' service user is rita, a reader: Barbican lets her
		// in but refuses to store a secret.
		cloudsYAML := filepath.Join(t.TempDir(), "clouds.yaml")
		content := fmt.Sprintf("clouds:\n  ck:\n    auth:\n      auth_url: %s\n      username: rita\n      password: ritapw\n"+
			"      project_name: team-a\n      user_domain_name: Default\n      project_domain_name: Default\n    region_name: RegionOne\n", k.URL)
		if err := os.WriteFile(cloudsYAML, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		weak := startServer(t, serverOpts{
			args:    []string{"--keys", "barbican", "--barbican-endpoint", b.URL, "--os-cloud", "ck"},
			env:     []string{"OS_CLIENT_CONFIG_FILE=" + cloudsYAML},
			unready: true,
		})
		if r := do(t, "GET", weak.URL+"/readyz", "", nil); r.Status != 503 {
			t.Fatalf("readyz with Barbican refusing the service user: %d %s", r.Status, r.Body)
		}
		r := do(t, "PUT", weak.URL+"/v1/clusters/ks-weak/ca", memberToken, `{}`)
		var p struct {
			Code   string `json:"code"`
			Detail string `json:"detail"`
		}
		r.json(t, &p)
		if r.Status != 502 || p.Code != "backend_error" || !strings.Contains(p.Detail, "HTTP 403") {
			t.Fatalf("create a CA with a service user Barbican refuses: %d %s", r.Status, r.Body)
		}
		if strings.Contains(string(r.Body), b.URL) {
			t.Fatalf("the answer names Barbican's endpoint: %s", r.Body)
		}
		if r := do(t, "GET", weak.URL+"/v1/clusters/ks-weak/ca", memberToken, nil); r.Status != 404 {
			t.Fatalf("a refused create left a CA behind: %d", r.Status)
		}
	})
}

// TestKeystoneOwnership is who owns what with real Keystone scopes: the
// admin role counts everywhere only on a system-scoped token or in the
// admin project; an admin of another project (svc in service) is that
// project's only; a domain-scoped member (dora) has no project, so it owns
// nothing, creates nothing (403 project_required) and cannot reach the
// objects of nobody a project-less admin created.
func TestKeystoneOwnership(t *testing.T) {
	k := startKeystone(t)
	s := keystoneServer(t, k)
	// Tokens live keystoneTokenLifetime: each request logs in afresh.
	system := func() string { return k.scopedToken(t, "admin", `{"system":{"all":true}}`) }
	dora := func() string { return k.scopedToken(t, "dora", `{"domain":{"id":"default"}}`) }
	if r := do(t, "PUT", s.URL+"/v1/clusters/own-a/ca", k.token(t, "alice", "team-a"), `{}`); r.Status != 201 {
		t.Fatalf("alice creates a CA in team-a: %d %s", r.Status, r.Body)
	}
	if r := do(t, "PUT", s.URL+"/v1/clusters/own-nobody/ca", system(), `{}`); r.Status != 201 {
		t.Fatalf("a system-scoped admin creates a CA of nobody: %d %s", r.Status, r.Body)
	}
	if r := do(t, "POST", s.URL+"/v1/keys", system(), map[string]any{"name": "own-nobody-kek"}); r.Status != 201 {
		t.Fatalf("a system-scoped admin creates a KEK of nobody: %d %s", r.Status, r.Body)
	}
	r := do(t, "POST", s.URL+"/v1/keys/own-nobody-kek/wrap", system(), map[string]any{"plaintext": "c2VlZA=="})
	if r.Status != 200 {
		t.Fatalf("wrap: %d %s", r.Status, r.Body)
	}
	var wrapped struct {
		Ciphertext string `json:"ciphertext"`
	}
	r.json(t, &wrapped)
	unwrap := map[string]any{"ciphertext": wrapped.Ciphertext}

	tests := []struct {
		name   string
		token  func() string
		method string
		path   string
		body   any
		want   int
		code   string
	}{
		{"a system-scoped admin reads any project's CA", system, "GET", "/v1/clusters/own-a/ca", nil, 200, ""},
		{"an admin of the admin project reads any project's CA", func() string { return k.token(t, "admin", "admin") }, "GET", "/v1/clusters/own-a/ca", nil, 200, ""},
		{"an admin of another project may not read team-a's CA", func() string { return k.token(t, "svc", "service") }, "GET", "/v1/clusters/own-a/ca", nil, 403, "forbidden"},
		{"an admin of another project may not read a CA of nobody", func() string { return k.token(t, "svc", "service") }, "GET", "/v1/clusters/own-nobody/ca", nil, 403, "forbidden"},
		{"an admin of another project acts as a member there", func() string { return k.token(t, "svc", "service") }, "PUT", "/v1/clusters/own-svc/ca", `{}`, 201, ""},
		{"a domain-scoped member may not create a CA", dora, "PUT", "/v1/clusters/own-dora/ca", `{}`, 403, "project_required"},
		{"a domain-scoped member may not create a KEK", dora, "POST", "/v1/keys", map[string]any{"name": "own-dora-kek"}, 403, "project_required"},
		{"a domain-scoped member may not rekey a CA of nobody", dora, "POST", "/v1/clusters/own-nobody/ca/rekey", `{}`, 403, "forbidden"},
		{"a domain-scoped member may not unwrap with a KEK of nobody", dora, "POST", "/v1/keys/own-nobody-kek/unwrap", unwrap, 403, "forbidden"},
		{"a domain-scoped member may not read a project's CA", dora, "GET", "/v1/clusters/own-a/ca", nil, 403, "forbidden"},
		{"a system-scoped admin unwraps with a KEK of nobody", system, "POST", "/v1/keys/own-nobody-kek/unwrap", unwrap, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.method, s.URL+tt.path, tt.token(), tt.body)
			if r.Status != tt.want {
				t.Fatalf("%d, want %d: %s", r.Status, tt.want, r.Body)
			}
			if tt.code != "" {
				if got := r.problemCode(t); got != tt.code {
					t.Fatalf("code %q, want %q", got, tt.code)
				}
			}
		})
	}
}

// TestKeystoneDownFailsClosed stops the shared Keystone under a running
// service: a token not yet cached gets 503, never a guess. It must stay the
// last Keystone test (Go runs tests in file order; keystone_test.go holds
// them all), since setting up another Keystone costs 1–2 minutes of CI.
func TestKeystoneDownFailsClosed(t *testing.T) {
	k := startKeystone(t)
	s := keystoneServer(t, k)
	tok := k.token(t, "alice", "team-a")
	_ = scriptCmd("keystone.sh", "stop", k.dir).Run()
	// Keystone stays down: tests after this one that need it fail clearly.
	sharedKeystone.err = fmt.Errorf("the shared Keystone was stopped by TestKeystoneDownFailsClosed")
	r := do(t, "GET", s.URL+"/v1/clusters/any/ca", tok, nil)
	if r.Status != 503 || r.problemCode(t) != "backend_unavailable" {
		t.Fatalf("with Keystone down: %d %s", r.Status, r.Body)
	}
}

// scopedToken logs user in with scope, a Keystone scope object such as
// {"system":{"all":true}} or {"domain":{"id":"default"}}.
func (k *keystone) scopedToken(t *testing.T, user, scope string) string {
	t.Helper()
	body := fmt.Sprintf(`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":%q,"domain":{"id":"default"},"password":%q}}},
		"scope":%s}}`, user, user+"pw", scope)
	resp, err := client.Post(k.URL+"/auth/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("log in %s with scope %s: %d", user, scope, resp.StatusCode)
	}
	return resp.Header.Get("X-Subject-Token")
}
