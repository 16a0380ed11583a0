package kube

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/testproc"
)

// The revocation test's identities: the same token file serves localrun
// (token,user,project,"roles") and kube-apiserver's readiness probe.
const (
	revAdminToken = "kube-rev-admin-token-0123456789"
	revAliceToken = "kube-rev-alice-token-0123456789"
	revBobToken   = "kube-rev-bob-token-0123456789"
)

// reloadWait bounds how long kube-apiserver may take to reload its
// --client-ca-file (it watches the file, and re-reads it every minute).
const reloadWait = 90 * time.Second

// TestKubeAPIServerRevokeOneUser: kube-apiserver reads no CRL, but it
// reloads --client-ca-file. alice and bob hold client certificates of the
// cluster's CA; revoking alice with reissue rotates the CA and re-signs
// bob's certificate (same key, fetched by his old serial): once the file
// holds the new trust bundle, alice gets 401 and bob is still bob. With a
// grace period both old certificates keep working until it ends, then
// alice's stops.
func TestKubeAPIServerRevokeOneUser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	requireTools(t)
	kapi := kubeAPIServer(t)
	dir := t.TempDir()
	ck := startLocalrun(t, dir)
	const cluster = "kube-revoke"

	ck.call(t, "PUT", "/v1/clusters/"+cluster+"/ca", revAliceToken, nil, 201, nil)
	caFile := filepath.Join(dir, "client-ca.pem")
	writeBundle := func(t *testing.T) int {
		t.Helper()
		var ca struct {
			Generation  int    `json:"generation"`
			TrustBundle string `json:"trust_bundle"`
		}
		ck.call(t, "GET", "/v1/clusters/"+cluster+"/ca", revBobToken, nil, 200, &ca)
		tmp := caFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(ca.TrustBundle), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, caFile); err != nil {
			t.Fatal(err)
		}
		return strings.Count(ca.TrustBundle, "BEGIN CERTIFICATE")
	}
	writeBundle(t)
	alice := ck.holder(t, cluster, "alice", revAliceToken)
	bob := ck.holder(t, cluster, "bob", revBobToken)

	api := startKubeAPIServer(t, kapi, dir, caFile)
	for _, h := range []*certHolder{alice, bob} {
		if code, user := api.whoami(t, h.cert, h.key); code != 201 || user != h.user {
			t.Fatalf("%s's certificate: %d %q, want 201 %s", h.user, code, user, h.user)
		}
	}
	t.Logf("alice and bob are authenticated by their client certificates")

	// Revoke alice alone, with no grace: the CA rotates and bob's
	// certificate is re-issued under the new CA.
	var rev struct {
		CAGeneration int `json:"ca_generation"`
		Reissued     []struct {
			Serial       string `json:"serial"`
			SupersededBy string `json:"superseded_by"`
		} `json:"reissued"`
	}
	t0 := time.Now()
	ck.call(t, "POST", "/v1/clusters/"+cluster+"/revocations", revAdminToken,
		map[string]any{"user": "alice", "reason": "affiliationChanged", "reissue": true}, 200, &rev)
	t.Logf("revoke alice with reissue: %v, generation %d, %d re-issued", time.Since(t0).Round(time.Millisecond), rev.CAGeneration, len(rev.Reissued))
	bobNew := ck.reissued(t, cluster, bob)
	if n := writeBundle(t); n != 1 {
		t.Fatalf("the trust bundle holds %d certificates after a reissue with no grace, want 1", n)
	}
	t0 = time.Now()
	api.waitFor(t, "bob's re-issued certificate is accepted", func() bool {
		code, user := api.whoami(t, bobNew.cert, bobNew.key)
		return code == 201 && user == "bob"
	})
	t.Logf("kube-apiserver reloaded the client CA file in %v", time.Since(t0).Round(time.Millisecond))
	for _, h := range []*certHolder{alice, bob} {
		if code, _ := api.whoami(t, h.cert, h.key); code != 401 {
			t.Errorf("%s's old certificate after the reissue: %d, want 401", h.user, code)
		}
	}

	t.Run("with a grace period both old certificates work until it ends", func(t *testing.T) {
		const grace = 20 * time.Second
		if r := ck.request(t, "DELETE", "/v1/clusters/"+cluster+"/revocations/users/alice", revAdminToken, nil); r.status != 204 {
			t.Fatalf("lift alice's revocation: %d %s", r.status, r.body)
		}
		alice2 := ck.holder(t, cluster, "alice", revAliceToken)
		if code, user := api.whoami(t, alice2.cert, alice2.key); code != 201 || user != "alice" {
			t.Fatalf("alice's certificate of the active generation: %d %q", code, user)
		}
		revokedAt := time.Now()
		ck.call(t, "POST", "/v1/clusters/"+cluster+"/revocations", revAdminToken,
			map[string]any{"user": "alice", "reason": "affiliationChanged", "reissue": true, "grace_period_seconds": int(grace / time.Second)}, 200, nil)
		// bob asks by his first serial: the newest certificate of the chain.
		bob3 := ck.reissued(t, cluster, bob)
		if bob3.serial == bobNew.serial {
			t.Fatal("bob's first serial still answers the generation 2 certificate")
		}
		if n := writeBundle(t); n != 2 {
			t.Fatalf("the trust bundle holds %d certificates during the grace period, want 2", n)
		}
		api.waitFor(t, "bob's certificate of the new generation is accepted", func() bool {
			code, user := api.whoami(t, bob3.cert, bob3.key)
			return code == 201 && user == "bob"
		})
		if time.Since(revokedAt) > grace-5*time.Second {
			t.Fatalf("kube-apiserver took %v to reload the file: too close to the %v grace period to check it", time.Since(revokedAt), grace)
		}
		for _, h := range []*certHolder{alice2, bobNew} {
			if code, user := api.whoami(t, h.cert, h.key); code != 201 || user != h.user {
				t.Errorf("%s's old certificate during the grace period: %d %q, want 201", h.user, code, user)
			}
		}
		// The grace ends: the trust bundle drops the old generation.
		deadline := revokedAt.Add(grace + 30*time.Second)
		for {
			var ca struct {
				TrustBundle string `json:"trust_bundle"`
			}
			ck.call(t, "GET", "/v1/clusters/"+cluster+"/ca", revBobToken, nil, 200, &ca)
			if strings.Count(ca.TrustBundle, "BEGIN CERTIFICATE") == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the trust bundle still holds the old generation %v after the revocation", time.Since(revokedAt))
			}
			time.Sleep(time.Second)
		}
		t.Logf("the grace period ended %v after the revocation", time.Since(revokedAt).Round(time.Second))
		writeBundle(t)
		api.waitFor(t, "alice's old certificate is refused", func() bool {
			code, _ := api.whoami(t, alice2.cert, alice2.key)
			return code == 401
		})
		if code, user := api.whoami(t, bob3.cert, bob3.key); code != 201 || user != "bob" {
			t.Errorf("bob's current certificate after the grace: %d %q", code, user)
		}
		if code, _ := api.whoami(t, bobNew.cert, bobNew.key); code != 401 {
			t.Errorf("bob's old certificate after the grace: %d, want 401", code)
		}
	})
}

// certHolder is a user's key and certificate.
type certHolder struct {
	user, serial string
	cert         []byte // PEM
	key          *ecdsa.PrivateKey
}

// localrun is a running localrun serve.
type localrun struct {
	url string
	hc  *http.Client
}

type answer struct {
	status int
	body   []byte
}

func (l *localrun) request(t *testing.T, method, path, token string, body any) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, l.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil || method == "PUT" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := l.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, b}
}

// call sends a request, wants status and decodes the answer into out.
func (l *localrun) call(t *testing.T, method, path, token string, body any, status int, out any) {
	t.Helper()
	r := l.request(t, method, path, token, body)
	if r.status != status {
		t.Fatalf("%s %s: %d %s, want %d", method, path, r.status, r.body, status)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, r.body)
		}
	}
}

// holder has user sign a client certificate CN=user with a fresh key.
func (l *localrun) holder(t *testing.T, cluster, user, token string) *certHolder {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: user, Organization: []string{"developers"}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Certificate string `json:"certificate"`
		Serial      string `json:"serial"`
	}
	l.call(t, "POST", "/v1/clusters/"+cluster+"/certificates", token, map[string]any{
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), "profile": "client",
	}, 201, &out)
	return &certHolder{user: user, serial: out.Serial, cert: []byte(out.Certificate), key: key}
}

// reissued fetches h's certificate by h's serial after a reissue: it must
// answer superseded_by and a certificate for h's key and subject.
func (l *localrun) reissued(t *testing.T, cluster string, h *certHolder) *certHolder {
	t.Helper()
	var e struct {
		SupersededBy string `json:"superseded_by"`
		Certificate  string `json:"certificate"`
	}
	l.call(t, "GET", "/v1/clusters/"+cluster+"/certificates/"+h.serial, revBobToken, nil, 200, &e)
	if e.SupersededBy == "" || e.Certificate == "" {
		t.Fatalf("%s's serial %s after a reissue: superseded_by %q, certificate %d bytes", h.user, h.serial, e.SupersededBy, len(e.Certificate))
	}
	b, _ := pem.Decode([]byte(e.Certificate))
	if b == nil {
		t.Fatalf("no PEM certificate for %s", h.serial)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(h.key.Public())
	if !bytes.Equal(c.RawSubjectPublicKeyInfo, pub) || c.Subject.CommonName != h.user {
		t.Fatalf("%s's re-issued certificate is for another key or subject (%v)", h.user, c.Subject)
	}
	return &certHolder{user: h.user, serial: e.SupersededBy, cert: []byte(e.Certificate), key: h.key}
}

// startLocalrun runs localrun serve on loopback with a fresh state dir and
// the test's token file, stopped when t ends.
func startLocalrun(t *testing.T, dir string) *localrun {
	t.Helper()
	bin := ""
	if d := os.Getenv("CLUSTERKEYS_BIN"); d != "" {
		bin = filepath.Join(d, "localrun")
	}
	if _, err := os.Stat(bin); bin == "" || err != nil {
		_, file, _, _ := runtime.Caller(0)
		bin = filepath.Join(dir, "localrun")
		cmd := exec.Command("go", "build", "-o", bin, "./localrun")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build ./localrun: %v\n%s", err, out)
		}
	}
	tokens := filepath.Join(dir, "ck-tokens.csv")
	lines := revAdminToken + ",root,ops,\"admin\"\n" + revAliceToken + ",alice,team-a,\"member\"\n" + revBobToken + ",bob,team-a,\"member\"\n"
	if err := os.WriteFile(tokens, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testproc.FreeAddr(t)
	startProcess(t, "localrun", bin, "serve", "--listen", addr, "--state-dir", filepath.Join(dir, "state"),
		"--token-auth-file", tokens, "--log-level", "warn")
	l := &localrun{url: "http://" + addr, hc: &http.Client{Timeout: 120 * time.Second}}
	waitHTTP(t, "localrun", l.hc, l.url+"/readyz", "", 90*time.Second)
	return l
}

// kubeAPI is a running kube-apiserver.
type kubeAPI struct{ url string }

// startKubeAPIServer runs etcd and kube-apiserver on loopback, with
// --client-ca-file caFile, both stopped when t ends.
func startKubeAPIServer(t *testing.T, kapi, dir, caFile string) *kubeAPI {
	t.Helper()
	client, peer := "http://"+testproc.FreeAddr(t), "http://"+testproc.FreeAddr(t)
	startProcess(t, "etcd", "etcd", "--name", "rev", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "rev="+peer, "--log-level", "warn")
	waitHTTP(t, "etcd", http.DefaultClient, client+"/health", "", 30*time.Second)

	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	saKey, saPub := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if err := os.WriteFile(saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(sa)}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "kube-tokens.csv")
	if err := os.WriteFile(tokens, []byte(revAdminToken+",kube-admin,kube-admin,system:masters\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testproc.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	startProcess(t, "kube-apiserver", kapi,
		"--etcd-servers="+client,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+port,
		"--cert-dir="+filepath.Join(dir, "pki"),
		"--client-ca-file="+caFile,
		"--token-auth-file="+tokens,
		"--anonymous-auth=false",
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+saPub,
		"--service-account-signing-key-file="+saKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		"--endpoint-reconciler-type=none",
		"--profiling=false", "--v=1")
	k := &kubeAPI{url: "https://" + addr}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	waitHTTP(t, "kube-apiserver", hc, k.url+"/readyz", revAdminToken, 120*time.Second)
	return k
}

// whoami posts a SelfSubjectReview with the client certificate and key
// alone (no token) and returns the status and the username it names.
func (k *kubeAPI) whoami(t *testing.T, certPEM []byte, key *ecdsa.PrivateKey) (int, string) {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	// A fresh connection every time: the certificate is checked at the
	// handshake's end, and a kept-alive connection would skip that.
	tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // kube-apiserver's self-signed serving certificate; the test is about client certificates
		Certificates:       []tls.Certificate{pair},
	}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	resp, err := hc.Post(k.url+"/apis/authentication.k8s.io/v1/selfsubjectreviews", "application/json",
		strings.NewReader(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`))
	if err != nil {
		t.Fatalf("SelfSubjectReview: %v", err)
	}
	defer resp.Body.Close()
	var review struct {
		Status struct {
			UserInfo struct {
				Username string `json:"username"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 201 {
		if err := json.Unmarshal(b, &review); err != nil {
			t.Fatalf("SelfSubjectReview answer %s: %v", b, err)
		}
	}
	return resp.StatusCode, review.Status.UserInfo.Username
}

// waitFor polls cond every half second until it holds, for at most
// reloadWait: kube-apiserver reloads --client-ca-file on its own time.
func (k *kubeAPI) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(reloadWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v of rewriting --client-ca-file", what, reloadWait)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// startProcess starts a program whose output goes to a buffer that a failed
// test prints; it is interrupted, then killed after 15 s,
// when t ends.
func startProcess(t *testing.T, name, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	logs := &testproc.Output{}
	cmd.Stdout, cmd.Stderr = logs, logs
	testproc.Start(t, name, cmd, 15*time.Second, logs)
}

// waitHTTP polls url until it answers 200, for at most d.
func waitHTTP(t *testing.T, name string, hc *http.Client, url, token string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		status := 0
		if err == nil {
			status = resp.StatusCode
			resp.Body.Close()
		}
		cancel()
		if status == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready in %v: %v (status %d)", name, d, err, status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
