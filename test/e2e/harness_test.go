// Package e2e drives clusterkeys end to end: the real localrun binary on
// loopback with SQLite and software custody, the real Lambda bootstraps
// behind localrun's Runtime API, and python-magnumclient against the
// Magnum-compatible routes.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/need"
	"github.com/clusterkeys/clusterkeys/internal/testproc"
)

// binDir holds localrun, kmsshim and lambda/<fn>/bootstrap: CLUSTERKEYS_BIN
// (make e2e builds them), or a temp dir TestMain builds them into.
var binDir string

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	binDir = os.Getenv("CLUSTERKEYS_BIN")
	if binDir == "" {
		dir, err := os.MkdirTemp("", "clusterkeys-e2e-bin")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(dir)
		if err := buildAll(dir); err != nil {
			return 0, err
		}
		binDir = dir
	}
	code := m.Run()
	for i := len(atExit) - 1; i >= 0; i-- {
		atExit[i]()
	}
	return code, nil
}

// atExit runs after every test of the package: shared servers stop there.
var atExit []func()

// scriptCmd is `bash test/scripts/<name> args…`.
func scriptCmd(name string, args ...string) *exec.Cmd {
	_, file, _, _ := runtime.Caller(0)
	return exec.Command("bash", append([]string{filepath.Join(filepath.Dir(file), "..", "scripts", name)}, args...)...)
}

// installOrMissing runs `test/scripts/<name> install` unless the
// component is present, and reports it need.Missing with msg when that
// fails.
func installOrMissing(t testing.TB, present bool, name, msg string) {
	t.Helper()
	if present {
		return
	}
	if err := scriptCmd(name, "install").Run(); err != nil {
		need.Missing(t, msg)
	}
}

// buildAll builds what make build and make lambda build.
func buildAll(dir string) error {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	builds := [][]string{
		{"build", "-o", filepath.Join(dir, "localrun"), "./localrun"},
		{"build", "-o", filepath.Join(dir, "kmsshim"), "./functions/kmsshim"},
	}
	for _, f := range []string{"signcsr", "rekeycluster", "keywrap", "validatebundle"} {
		builds = append(builds, []string{"build", "-tags", "lambda.norpc clusterkeys.metrics.none", "-o", filepath.Join(dir, "lambda", f, "bootstrap"), "./functions/" + f})
	}
	for _, args := range builds {
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// kmsshimBinary returns the kmsshim binary: make build puts it in
// CLUSTERKEYS_BIN, and TestMain builds it otherwise.
func kmsshimBinary(t *testing.T) string {
	t.Helper()
	p := filepath.Join(binDir, "kmsshim")
	if !fileExists(p) {
		t.Fatalf("%s is missing: run make build, or leave CLUSTERKEYS_BIN unset so that the tests build it", p)
	}
	return p
}

// server is a running localrun serve.
type server struct {
	URL      string
	Token    string
	StateDir string
	cmd      *exec.Cmd
	out      *testproc.Output
}

var (
	tokenLine   = regexp.MustCompile(`export CLUSTERKEYS_TOKEN=(\S+)`)
	servingLine = regexp.MustCompile(`^clusterkeys serving on `)
)

// Tokens every test server knows unless started with generateToken.
const (
	adminToken  = "e2e-admin-token-0123456789"
	memberToken = "e2e-member-token-0123456789"
	readerToken = "e2e-reader-token-0123456789"
	otherToken  = "e2e-other-project-token-0123456789"
)

var testTokens = []string{
	adminToken + ",root,ops,\"admin\"",
	memberToken + ",alice,team-a,\"member\"",
	readerToken + ",rita,team-a,\"reader\"",
	otherToken + ",bob,team-b,\"member\"",
}

// serverOpts configure startServer.
type serverOpts struct {
	// generateToken leaves the token file absent, so localrun creates one
	// and prints it; Token is then that printed token.
	generateToken bool
	args          []string
	// env is added to localrun's environment.
	env []string
	// unready waits for /healthz only: a backend that refuses clusterkeys
	// keeps /readyz at 503, which is what such a test checks.
	unready bool
	// stateDir, when set, is used instead of a fresh one (a restart).
	stateDir string
	// noLogDump keeps the logs out of a failed test's output: for a test
	// that fails when the logs hold a secret, printing them spreads it.
	noLogDump bool
}

// startServer runs localrun serve on a free loopback port with a fresh
// state dir, and waits until it is ready.
func startServer(t testing.TB, o serverOpts) *server {
	t.Helper()
	state := o.stateDir
	if state == "" {
		state = t.TempDir()
	}
	if !o.generateToken {
		writeTokens(t, state, testTokens...)
	}
	addr := testproc.FreeAddr(t)
	checkContract(t, addr)
	args := append([]string{"serve", "--listen", addr, "--state-dir", state, "--log-level", "warn"}, o.args...)
	args = append(args, e2eStoreArgs(t, state, o.args)...) // CLUSTERKEYS_E2E_STORE=postgres
	cmd := exec.Command(filepath.Join(binDir, "localrun"), args...)
	cmd.Dir = state
	cmd.Env = append(os.Environ(), o.env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &testproc.Output{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{URL: "http://" + addr, StateDir: state, cmd: cmd, out: logs, Token: adminToken}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() && !o.noLogDump {
			t.Logf("localrun logs:\n%s", logs.String())
		}
	})
	// The banner ends with the serving line's neighbours; read until EOF in
	// the background and hand over the token and the serving line.
	type banner struct{ token string }
	bc := make(chan banner, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var b banner
		serving := false
		for sc.Scan() {
			line := sc.Text()
			if m := tokenLine.FindStringSubmatch(line); m != nil {
				b.token = m[1]
			}
			if servingLine.MatchString(line) {
				serving = true
			}
			if serving && strings.HasPrefix(line, "Ctrl-C") {
				bc <- b
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case b := <-bc:
		if o.generateToken {
			if b.token == "" {
				t.Fatal("localrun created no token or did not print it")
			}
			s.Token = b.token
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("localrun did not start in 90 s; logs:\n%s", logs.String())
	}
	deadline := time.Now().Add(30 * time.Second)
	probe := "/readyz"
	if o.unready {
		probe = "/healthz"
	}
	for {
		resp, err := http.Get(s.URL + probe)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("localrun not ready in 30 s: %v; logs:\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// writeTokens writes a token file into dir.
func writeTokens(t testing.TB, dir string, lines ...string) string {
	t.Helper()
	path := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// response is a decoded HTTP answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// problemCode returns the code of a problem+json body.
func (r response) problemCode(t testing.TB) string {
	t.Helper()
	var p struct {
		Code   string `json:"code"`
		Status int    `json:"status"`
	}
	r.json(t, &p)
	if p.Status != r.Status {
		t.Errorf("problem status %d != HTTP status %d", p.Status, r.Status)
	}
	return p.Code
}

// client validates its exchanges with the test servers against the OpenAPI
// document (see contract_test.go).
var client = &http.Client{Timeout: 60 * time.Second, Transport: contractTransport{next: http.DefaultTransport}}

// do sends a request with token and body (string, []byte or JSON-encoded value).
func do(t testing.TB, method, url, token string, body any) response {
	t.Helper()
	r, err := tryDo(method, url, token, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tryDo is do that returns its error, for goroutines and for requests to a
// server that may be gone.
func tryDo(method, url, token string, body any) (response, error) {
	return send(client, method, url, token, body)
}

// send is tryDo with a chosen client.
func send(hc *http.Client, method, url, token string, body any) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, rd)
	if err != nil {
		return response{}, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// newCSR makes a PEM CSR for key with the given subject and DNS names.
func newCSR(t testing.TB, key crypto.Signer, cn string, orgs []string, dns ...string) string {
	t.Helper()
	return csrPEM(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: orgs}, DNSNames: dns})
}

// csrPEM makes a PEM CSR of tmpl signed by key.
func csrPEM(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func p256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// parseCert decodes one PEM certificate.
func parseCert(t testing.TB, s string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatalf("no PEM in %q", s)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pool makes a cert pool of every certificate in a PEM bundle.
func pool(t testing.TB, bundle string) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM([]byte(bundle)) {
		t.Fatalf("no certificate in bundle %q", bundle)
	}
	return p
}
