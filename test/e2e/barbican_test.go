package e2e

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/testproc"
)

// barbican is a Debian Barbican on loopback, started by the project's
// script for one test.
type barbican struct {
	URL string
	dir string
}

// startBarbican starts a Barbican of its own for t (about 3 s here), with
// extra environment for barbican.sh.
func startBarbican(t testing.TB, env ...string) *barbican {
	t.Helper()
	_, err := os.Stat("/usr/bin/uwsgi")
	installOrMissing(t, err == nil, "barbican.sh", "Barbican is missing: apt-get install barbican-api uwsgi-core uwsgi-plugin-python3 (or make deps)")
	b := &barbican{dir: t.TempDir()}
	port := strings.TrimPrefix(testproc.FreeAddr(t), "127.0.0.1:")
	start := time.Now()
	cmd := scriptCmd("barbican.sh", "start", b.dir, port)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("barbican.sh start: %v", err)
	}
	t.Logf("Barbican started in %v", time.Since(start).Round(time.Millisecond))
	b.URL = strings.TrimSpace(string(out))
	t.Cleanup(func() { b.stop(t) })
	return b
}

func (b *barbican) stop(t testing.TB) {
	t.Helper()
	if err := scriptCmd("barbican.sh", "stop", b.dir).Run(); err != nil {
		t.Errorf("barbican.sh stop: %v", err)
	}
}

func (b *barbican) restart(t testing.TB) {
	t.Helper()
	port := b.URL[strings.LastIndex(b.URL, ":")+1:]
	if out, err := scriptCmd("barbican.sh", "start", b.dir, port).CombinedOutput(); err != nil {
		t.Fatalf("barbican.sh start again: %v\n%s", err, out)
	}
}

// secrets lists the names of project's secrets.
func (b *barbican) secrets(t testing.TB, project string) []string {
	t.Helper()
	req, _ := http.NewRequest("GET", b.URL+"/v1/secrets?limit=100", nil)
	req.Header.Set("X-Project-Id", project)
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Secrets []struct {
			Name string `json:"name"`
		} `json:"secrets"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list.Secrets {
		names = append(names, s.Name)
	}
	return names
}

func barbicanArgs(b *barbican) []string {
	return []string{"--keys", "barbican", "--barbican-endpoint", b.URL, "--barbican-project", "clusterkeys"}
}

// TestCAWithKeysInBarbican runs the CA functions unchanged on Barbican
// custody: the active CA key is a Barbican secret, a retired one is deleted
// from Barbican at the rekey, and nothing else is kept.
func TestCAWithKeysInBarbican(t *testing.T) {
	b := startBarbican(t)
	s := startServer(t, serverOpts{args: barbicanArgs(b)})
	ca := createCA(t, s, memberToken, "bb-1", map[string]any{"key_algorithm": "ecdsa-p256"})
	before := sign(t, s, memberToken, "bb-1", map[string]any{"csr": newCSR(t, p256(t), "alice", nil), "profile": "client"})
	if err := verifies(t, before.Certificate, ca.TrustBundle, x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatalf("a certificate signed with a Barbican key does not verify: %v", err)
	}
	r := do(t, "POST", s.URL+"/v1/clusters/bb-1/ca/rekey", memberToken, map[string]any{"expected_generation": 1})
	if r.Status != 200 {
		t.Fatalf("rekey: %d %s", r.Status, r.Body)
	}
	names := b.secrets(t, "clusterkeys")
	if len(names) != 1 || !strings.HasPrefix(names[0], "ca/bb-1/2/") {
		t.Fatalf("Barbican holds %v, want generation 2's key only: the retired key is deleted", names)
	}
	if _, err := os.Stat(filepath.Join(s.StateDir, "master.key")); err == nil {
		t.Fatal("Barbican custody created a software master key")
	}
}

// TestKEKsInBarbican runs wrap/unwrap on Barbican custody: each KEK
// version is a Barbican secret, loaded for the operation only; ciphertext
// made under version 1 still unwraps after a rotation, and tampering or a
// wrong AAD is a 400, never a 500.
func TestKEKsInBarbican(t *testing.T) {
	b := startBarbican(t)
	s := startServer(t, serverOpts{args: barbicanArgs(b)})
	if r := do(t, "POST", s.URL+"/v1/keys", memberToken, map[string]any{"name": "bb-kek"}); r.Status != 201 {
		t.Fatalf("create KEK: %d %s", r.Status, r.Body)
	}
	type wrapped struct {
		Ciphertext string `json:"ciphertext"`
		KeyVersion int    `json:"key_version"`
	}
	wrap := func(pt, aad string) wrapped {
		t.Helper()
		var w wrapped
		r := do(t, "POST", s.URL+"/v1/keys/bb-kek/wrap", memberToken, map[string]any{"plaintext": pt, "aad": aad})
		r.json(t, &w)
		if r.Status != 200 {
			t.Fatalf("wrap: %d %s", r.Status, r.Body)
		}
		return w
	}
	unwrap := func(ct, aad string) (response, string) {
		t.Helper()
		var u struct {
			Plaintext string `json:"plaintext"`
		}
		r := do(t, "POST", s.URL+"/v1/keys/bb-kek/unwrap", memberToken, map[string]any{"ciphertext": ct, "aad": aad})
		if r.Status == 200 {
			r.json(t, &u)
		}
		return r, u.Plaintext
	}
	pt1 := base64.StdEncoding.EncodeToString([]byte("a data key under version 1......"))
	aad := base64.StdEncoding.EncodeToString([]byte("/registry/secrets/default/db"))
	w1 := wrap(pt1, aad)
	if r := do(t, "POST", s.URL+"/v1/keys/bb-kek/rotate", memberToken, map[string]any{}); r.Status != 200 {
		t.Fatalf("rotate: %d %s", r.Status, r.Body)
	}
	pt2 := base64.StdEncoding.EncodeToString([]byte("a data key under version 2......"))
	w2 := wrap(pt2, aad)
	if w1.KeyVersion != 1 || w2.KeyVersion != 2 {
		t.Fatalf("key versions %d and %d, want 1 and 2", w1.KeyVersion, w2.KeyVersion)
	}
	for _, c := range []struct {
		w  wrapped
		pt string
	}{{w1, pt1}, {w2, pt2}} {
		if r, got := unwrap(c.w.Ciphertext, aad); r.Status != 200 || got != c.pt {
			t.Fatalf("unwrap version %d: %d %s", c.w.KeyVersion, r.Status, r.Body)
		}
	}
	if r, _ := unwrap(w1.Ciphertext, base64.StdEncoding.EncodeToString([]byte("other"))); r.Status != 400 {
		t.Fatalf("unwrap with a wrong AAD: %d %s", r.Status, r.Body)
	}
	ct, _ := base64.StdEncoding.DecodeString(w2.Ciphertext)
	ct[len(ct)-1] ^= 1
	if r, _ := unwrap(base64.StdEncoding.EncodeToString(ct), aad); r.Status != 400 {
		t.Fatalf("unwrap of a tampered ciphertext: %d %s", r.Status, r.Body)
	}
	var keks []string
	for _, n := range b.secrets(t, "clusterkeys") {
		if strings.HasPrefix(n, "kek/bb-kek/") {
			keks = append(keks, n)
		}
	}
	if len(keks) != 2 {
		t.Fatalf("Barbican holds KEK secrets %v, want one per version", keks)
	}
	if _, err := os.Stat(filepath.Join(s.StateDir, "master.key")); err == nil {
		t.Fatal("Barbican custody created a software master key")
	}
}

// TestBarbicanDownDuringRekey stops Barbican under a running service: the
// rekey answers 503 backend_unavailable with Retry-After, the old CA stays
// active, and when Barbican is back nothing is orphaned and work resumes.
func TestBarbicanDownDuringRekey(t *testing.T) {
	b := startBarbican(t)
	s := startServer(t, serverOpts{args: barbicanArgs(b)})
	createCA(t, s, memberToken, "bb-down", nil)
	secretsBefore := b.secrets(t, "clusterkeys")

	b.stop(t)
	r := do(t, "POST", s.URL+"/v1/clusters/bb-down/ca/rekey", memberToken, `{}`)
	if r.Status != 503 || r.problemCode(t) != "backend_unavailable" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("rekey with Barbican down: %d %s (Retry-After %q)", r.Status, r.Body, r.Header.Get("Retry-After"))
	}
	if r := do(t, "GET", s.URL+"/readyz", "", nil); r.Status != 503 {
		t.Fatalf("readyz with Barbican down: %d", r.Status)
	}
	var ca caResource
	do(t, "GET", s.URL+"/v1/clusters/bb-down/ca", memberToken, nil).json(t, &ca)
	if ca.Generation != 1 {
		t.Fatalf("a failed rekey moved the CA to generation %d", ca.Generation)
	}

	b.restart(t)
	if got := b.secrets(t, "clusterkeys"); len(got) != len(secretsBefore) {
		t.Fatalf("Barbican holds %v after the failed rekey, had %v: an orphaned secret", got, secretsBefore)
	}
	sign(t, s, memberToken, "bb-down", map[string]any{"csr": newCSR(t, p256(t), "alice", nil), "profile": "client"})
	if r := do(t, "POST", s.URL+"/v1/clusters/bb-down/ca/rekey", memberToken, map[string]any{"expected_generation": 1}); r.Status != 200 {
		t.Fatalf("rekey after Barbican came back: %d %s", r.Status, r.Body)
	}
}

// TestBarbicanHangsDuringRekey freezes Barbican (SIGSTOP: connections are
// accepted, nothing answers) while a rekey creates the new CA key, then lets
// it resume: the rekey answers 503 and leaves the old CA active, and the
// secret the frozen Barbican stores late is deleted by clusterkeys, so
// nothing is orphaned.
func TestBarbicanHangsDuringRekey(t *testing.T) {
	b := startBarbican(t)
	s := startServer(t, serverOpts{args: barbicanArgs(b)})
	createCA(t, s, memberToken, "bb-hang", nil)
	before := b.secrets(t, "clusterkeys")
	pidFile, err := os.ReadFile(filepath.Join(b.dir, "server.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pgid, err := strconv.Atoi(strings.TrimSpace(string(pidFile)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(-pgid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := true
	resume := func() {
		if frozen {
			frozen = false
			if err := syscall.Kill(-pgid, syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT: %v", err)
			}
		}
	}
	t.Cleanup(resume)

	t0 := time.Now()
	r := do(t, "POST", s.URL+"/v1/clusters/bb-hang/ca/rekey", memberToken, map[string]any{"expected_generation": 1})
	if r.Status != 503 || r.problemCode(t) != "backend_unavailable" {
		t.Fatalf("rekey with Barbican frozen: %d %s", r.Status, r.Body)
	}
	t.Logf("rekey with Barbican frozen answered 503 after %v", time.Since(t0).Round(time.Millisecond))
	var ca caResource
	do(t, "GET", s.URL+"/v1/clusters/bb-hang/ca", memberToken, nil).json(t, &ca)
	if ca.Generation != 1 {
		t.Fatalf("a failed rekey moved the CA to generation %d", ca.Generation)
	}

	resume()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := b.secrets(t, "clusterkeys")
		if len(got) == len(before) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Barbican holds %v a minute after it resumed, had %v: an orphaned secret", got, before)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := do(t, "POST", s.URL+"/v1/clusters/bb-hang/ca/rekey", memberToken, map[string]any{"expected_generation": 1}); r.Status != 200 {
		t.Fatalf("rekey after Barbican resumed: %d %s", r.Status, r.Body)
	}
	if got := b.secrets(t, "clusterkeys"); len(got) != 1 || !strings.HasPrefix(got[0], "ca/bb-hang/2/") {
		t.Fatalf("Barbican holds %v after the rekey, want generation 2's key only", got)
	}
}

// BenchmarkSignCSRCustody compares sign-CSR through localrun with Barbican
// custody (the CA key fetched from Barbican for every sign) and software
// custody, in the same run.
func BenchmarkSignCSRCustody(b *testing.B) {
	for _, custody := range []string{"software", "barbican"} {
		b.Run(custody, func(b *testing.B) {
			var args []string
			if custody == "barbican" {
				args = barbicanArgs(startBarbican(b))
			}
			s := startServer(b, serverOpts{args: args})
			if r := do(b, "PUT", s.URL+"/v1/clusters/load/ca", adminToken, `{}`); r.Status != 201 {
				b.Fatalf("create CA: %d %s", r.Status, r.Body)
			}
			body, _ := json.Marshal(map[string]any{"csr": newCSR(b, p256(b), "load", nil), "profile": "client"})
			loadRun(b, s.URL+"/v1/clusters/load/certificates", body, http.StatusCreated)
		})
	}
}
