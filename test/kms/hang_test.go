package kms

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	kmsservice "k8s.io/kms/pkg/service"

	"github.com/clusterkeys/clusterkeys/internal/need"
)

// barbicanForShim starts a Barbican of its own with the project's script
// and returns its endpoint and the process group of its server, which the
// test freezes. Under CI its absence fails the test; elsewhere it skips
// with what to install.
func barbicanForShim(t *testing.T) (url string, pgid int) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "scripts", "barbican.sh")
	if _, err := os.Stat("/usr/bin/uwsgi"); err != nil {
		if err := exec.Command("bash", script, "install").Run(); err != nil {
			need.Missing(t, "Barbican is missing: apt-get install barbican-api uwsgi-core uwsgi-plugin-python3 (or make deps)")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	dir := t.TempDir()
	out, err := exec.Command("bash", script, "start", dir, port).Output()
	if err != nil {
		t.Fatalf("barbican.sh start: %v", err)
	}
	t.Cleanup(func() {
		if err := exec.Command("bash", script, "stop", dir).Run(); err != nil {
			t.Errorf("barbican.sh stop: %v", err)
		}
	})
	b, err := os.ReadFile(filepath.Join(dir, "server.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pgid, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out)), pgid
}

// TestShimReportsAHungCustody freezes the custody under a running shim
// (SIGSTOP to the real Barbican that holds the KEK: connections open, no
// answer ever comes, as with a hung network HSM). Status must say so with
// Unavailable within its probe timeout, not leave kube-apiserver's client
// to time out; no plaintext is served; and once the custody answers again
// the same shim process is healthy again.
func TestShimReportsAHungCustody(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Barbican and the kmsshim binary")
	}
	ctx := context.Background()
	url, pgid := barbicanForShim(t)
	bin := shimBinary(t)
	sock := filepath.Join(socketDir(t), "kms.sock")
	p := startBinaryWith(t, bin, sock, []string{"--keys", "barbican", "--barbican-endpoint", url,
		"--barbican-project", "clusterkeys", "--state-dir", t.TempDir(), "--status-cache", "100ms", "--status-timeout", "2s"}, nil)
	c := kubeClient(t, sock) // 5 s per call, above the shim's probe timeout
	st, err := c.Status(ctx)
	if err != nil || st.Healthz != "ok" {
		t.Fatalf("Status with Barbican up = %+v, %v\n%s", st, err, p.log.String())
	}
	seed := []byte("0123456789abcdef0123456789abcdef")
	r, err := c.Encrypt(ctx, "before", seed)
	if err != nil {
		t.Fatal(err)
	}

	if err := syscall.Kill(-pgid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := syscall.Kill(-pgid, syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT: %v", err)
			}
		}
	}
	t.Cleanup(resume)
	time.Sleep(200 * time.Millisecond) // past the status cache
	for i := range 3 {
		t0 := time.Now()
		_, err := c.Status(ctx)
		took := time.Since(t0)
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("Status %d with the custody hung = %v after %v, want Unavailable from the shim, not the client's deadline\n%s", i, err, took, p.log.String())
		}
		t.Logf("Status %d with the custody hung: %v after %v", i, status.Code(err), took.Round(time.Millisecond))
	}
	if pt, err := c.Decrypt(ctx, "during", &kmsservice.DecryptRequest{Ciphertext: r.Ciphertext, KeyID: r.KeyID, Annotations: r.Annotations}); err == nil {
		t.Fatalf("Decrypt served %d bytes with the custody hung", len(pt))
	}

	resume()
	start := time.Now()
	for {
		st, err := c.Status(ctx)
		if err == nil && st.Healthz == "ok" {
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("not healthy 15 s after the custody answered again: %v\n%s", err, p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("healthy again %v after the custody answered", time.Since(start).Round(time.Millisecond))
	pt, err := c.Decrypt(ctx, "after", &kmsservice.DecryptRequest{Ciphertext: r.Ciphertext, KeyID: r.KeyID, Annotations: r.Annotations})
	if err != nil || string(pt) != string(seed) {
		t.Fatalf("Decrypt after recovery: %v", err)
	}
	if p.cmd.ProcessState != nil {
		t.Fatal("the shim exited; it must recover without a restart")
	}
}

// TestShimReportsAHungHSM runs the kmsshim binary on a PKCS#11 module that
// forwards to SoftHSM2 but holds C_Decrypt while a file exists (the shim of
// pkg/keys/pkcs11/testdata/hangshim.c): a token that stops answering in the
// middle of a call. Status must answer Unavailable within --status-timeout
// every time, and the same process must be healthy again once the token
// answers.
func TestShimReportsAHungHSM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the kmsshim binary")
	}
	gcc := need.Tool(t, "gcc", "apt-get install gcc (it builds the hung-token module)")
	ctx := context.Background()
	bin := shimBinary(t)
	env, _ := softHSMToken(t)
	dir := t.TempDir()
	module, hold := filepath.Join(dir, "hangshim.so"), filepath.Join(dir, "hold")
	for i, kv := range env {
		if real, ok := strings.CutPrefix(kv, "CLUSTERKEYS_PKCS11_MODULE="); ok {
			out, err := exec.Command(gcc, "-shared", "-fPIC", "-o", module,
				"-DREAL_MODULE="+strconv.Quote(real), "-DHOLD_FILE="+strconv.Quote(hold),
				filepath.Join("..", "..", "pkg", "keys", "pkcs11", "testdata", "hangshim.c"), "-ldl").CombinedOutput()
			if err != nil {
				t.Fatalf("build the hung-token module: %v\n%s", err, out)
			}
			env[i] = "CLUSTERKEYS_PKCS11_MODULE=" + module
		}
	}
	sock := filepath.Join(socketDir(t), "kms.sock")
	p := startBinaryWith(t, bin, sock, []string{"--keys", "pkcs11", "--state-dir", filepath.Join(t.TempDir(), "state"),
		"--status-cache", "100ms", "--status-timeout", "1s", "--pkcs11-call-timeout", "2s"}, env)
	c := kubeClient(t, sock)
	if st, err := c.Status(ctx); err != nil || st.Healthz != "ok" {
		t.Fatalf("Status before the hang = %+v, %v\n%s", st, err, p.log.String())
	}
	if err := os.WriteFile(hold, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(hold) })
	time.Sleep(200 * time.Millisecond) // past the status cache
	for i := range 4 {
		t0 := time.Now()
		_, err := c.Status(ctx)
		took := time.Since(t0)
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("Status %d with the HSM hung = %v after %v, want Unavailable from the shim\n%s", i, err, took, p.log.String())
		}
		t.Logf("Status %d with the HSM hung: %v after %v", i, status.Code(err), took.Round(time.Millisecond))
	}
	if err := os.Remove(hold); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		st, err := c.Status(ctx)
		if err == nil && st.Healthz == "ok" {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("not healthy 10 s after the HSM answered again: %v\n%s", err, p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("healthy again %v after the HSM answered", time.Since(start).Round(time.Millisecond))
	if p.cmd.ProcessState != nil {
		t.Fatal("the shim exited; it must recover without a restart")
	}
}
