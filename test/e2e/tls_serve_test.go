package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/clusterkeys/clusterkeys/internal/testcert"
	"github.com/clusterkeys/clusterkeys/internal/testproc"

	// The settings accept the --keys and --store values of the backends a
	// binary links: these tests resolve the examples as localrun, which
	// links them all, does.
	_ "github.com/clusterkeys/clusterkeys/pkg/backends/all"
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/tlsserve"
)

// servedSerial opens a fresh TLS connection to addr and returns the serial
// of the certificate served.
func servedSerial(addr string, conf *tls.Config) (int64, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

// TestServeTLS runs the real localrun with --tls-cert-file and
// --tls-private-key-file on loopback: it answers over HTTPS to a client
// trusting the CA, announces https://, refuses TLS 1.1, serves a rotated
// pair without a restart and keeps serving the last good pair when a broken
// one replaces it.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	writeTokens(t, state, testTokens...)
	ca := testcert.NewCA(t, "e2e serving CA")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.WritePair(t, 1, certFile, keyFile)

	addr := testproc.FreeAddr(t)
	cmd := exec.Command(filepath.Join(binDir, "localrun"), "serve", "--listen", addr, "--state-dir", state,
		"--tls-cert-file", certFile, "--tls-private-key-file", keyFile)
	cmd.Dir = state
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &testproc.Output{}
	cmd.Stderr = logs
	exited := testproc.Start(t, "localrun", cmd, 10*time.Second, logs)
	banner := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			banner <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-banner:
		if want := "clusterkeys serving on https://" + addr; !strings.HasPrefix(line, want) {
			t.Fatalf("banner %q, want it to start with %q", line, want)
		}
	case <-exited:
		t.Fatalf("localrun exited before serving")
	case <-time.After(90 * time.Second):
		t.Fatal("localrun printed no banner in 90 s")
	}

	conf := &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"}
	https := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true}}
	base := "https://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := https.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready over HTTPS in 30 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	t.Run("answers an authenticated request over HTTPS", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPut, base+"/v1/clusters/tls-demo/ca", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+memberToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := https.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT ca over HTTPS: %d", resp.StatusCode)
		}
		if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
			t.Fatalf("connection state %+v", resp.TLS)
		}
	})

	t.Run("speaks no plain HTTP on the TLS port", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatal("plain HTTP answered 200 on the TLS port")
			}
		}
	})

	t.Run("refuses a client limited to TLS 1.1", func(t *testing.T) {
		old := conf.Clone()
		old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		if _, err := servedSerial(addr, old); err == nil {
			t.Fatal("a TLS 1.1 handshake succeeded")
		}
	})

	t.Run("serves a rotated pair without a restart", func(t *testing.T) {
		if got, err := servedSerial(addr, conf); err != nil || got != 1 {
			t.Fatalf("before rotation: serial %d, %v", got, err)
		}
		ca.WritePair(t, 2, certFile, keyFile)
		waitServed(t, addr, conf, 2)
		resp, err := https.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.TLS.PeerCertificates[0].SerialNumber.Int64(); resp.StatusCode != http.StatusOK || got != 2 {
			t.Fatalf("after rotation: %d with serial %d", resp.StatusCode, got)
		}
	})

	t.Run("keeps the last good pair when a broken one replaces it", func(t *testing.T) {
		testcert.Replace(t, keyFile, []byte("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n"))
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(logs.String(), "does not load") {
			if time.Now().After(deadline) {
				t.Fatal("the broken pair was not reported in 30 s")
			}
			if _, err := servedSerial(addr, conf); err != nil {
				t.Fatalf("handshake with a broken pair on disk: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got, err := servedSerial(addr, conf); err != nil || got != 2 {
			t.Fatalf("with a broken pair on disk: serial %d, %v; want the last good one (2)", got, err)
		}
		ca.WritePair(t, 3, certFile, keyFile)
		waitServed(t, addr, conf, 3)
	})

	select {
	case <-exited:
		t.Fatal("localrun exited during the test")
	default:
	}
}

// waitServed waits until fresh connections to addr are served serial.
func waitServed(t *testing.T, addr string, conf *tls.Config, serial int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := servedSerial(addr, conf)
		if err == nil && got == serial {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serial %d not served in 30 s: last %d, %v", serial, got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestServeRefusesPlainHTTPOffLoopback checks the listen policy through the
// real binary: a non-loopback --listen without TLS stops at start, naming
// --insecure-http, before any state is opened. Nothing here may serve on a
// non-loopback address, even with a binary that lacks the policy: the state
// dir lies under a regular file, so such a binary fails opening its state
// before it listens (with a message that does not name --insecure-http).
func TestServeRefusesPlainHTTPOffLoopback(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		t.Run(listen, func(t *testing.T) {
			blocker := filepath.Join(t.TempDir(), "not-a-dir")
			if err := os.WriteFile(blocker, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			out, code := runCommand(t, filepath.Join(binDir, "localrun"), "serve", "--listen", listen, "--state-dir", filepath.Join(blocker, "state"))
			if code == 0 {
				t.Fatalf("exit 0; output:\n%s", out)
			}
			for _, want := range []string{"--insecure-http", "--tls-cert-file", "loopback"} {
				if !strings.Contains(out, want) {
					t.Errorf("the refusal does not name %s:\n%s", want, out)
				}
			}
		})
	}
}

// TestFlagErrorsNameTheFlag checks every command's answer to a command line
// that does not parse: exit 2, the flag named and --help pointed at on
// stderr, nothing on stdout.
func TestFlagErrorsNameTheFlag(t *testing.T) {
	localrun := filepath.Join(binDir, "localrun")
	kmsshim := kmsshimBinary(t)
	tests := []struct {
		name string
		bin  string
		args []string
		want []string
	}{
		{"localrun serve: an unknown flag", localrun, []string{"serve", "--bogus"}, []string{"--bogus", "'localrun serve --help'"}},
		{"localrun serve: a misspelled flag", localrun, []string{"serve", "--lissten", "127.0.0.1:0"}, []string{"--lissten", "'localrun serve --help'"}},
		{"localrun serve: a flag missing its value", localrun, []string{"serve", "--listen"}, []string{"--listen", "'localrun serve --help'"}},
		{"localrun serve: a stray argument", localrun, []string{"serve", "--listen", "127.0.0.1:0", "extra"}, []string{`"extra"`, "'localrun serve --help'"}},
		{"localrun invoke: an unknown flag", localrun, []string{"invoke", "signcsr", "--bogus"}, []string{"--bogus", "'localrun invoke --help'"}},
		{"localrun invoke: a flag missing its value", localrun, []string{"invoke", "signcsr", "--event"}, []string{"--event", "'localrun invoke --help'"}},
		{"localrun: a flag before the command", localrun, []string{"--bogus"}, []string{"--bogus", "'localrun --help'"}},
		{"localrun: an unknown command", localrun, []string{"srve"}, []string{`"srve"`, "'localrun --help'"}},
		{"kmsshim: an unknown flag", kmsshim, []string{"--bogus"}, []string{"--bogus", "'kmsshim --help'"}},
		{"kmsshim: a flag missing its value", kmsshim, []string{"--listen"}, []string{"--listen", "'kmsshim --help'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A binary that ignores the mistake would serve: stop it.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, tt.bin, tt.args...)
			cmd.Dir = t.TempDir()
			var stdout, stderr testproc.Output
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("%v, want exit status 2; stderr:\n%s", err, stderr.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not say %s:\n%s", w, stderr.String())
				}
			}
			if stdout.String() != "" {
				t.Errorf("stdout: %q", stdout.String())
			}
		})
	}
}

// runCommand runs bin with args and returns its combined output and exit
// code; a command still running after a minute is killed.
func runCommand(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatal(err)
	return "", 0
}

// TestHostExampleServesTLS checks that infra/host's unit and env file pass
// the listen policy localrun applies at start, by serving TLS rather than
// by --insecure-http.
func TestHostExampleServesTLS(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "infra", "host")
	c := config.Default()
	fs := pflag.NewFlagSet("localrun serve", pflag.ContinueOnError)
	c.BindFlags(fs)
	unit, err := os.ReadFile(filepath.Join(dir, "clusterkeys.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s+--([a-z0-9-]+)=(\S+)`).FindAllStringSubmatch(string(unit), -1) {
		if err := fs.Set(m[1], m[2]); err != nil {
			t.Fatalf("clusterkeys.service: --%s: %v", m[1], err)
		}
	}
	env, err := os.ReadFile(filepath.Join(dir, "clusterkeys.env"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(env), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			vars[k] = v
		}
	}
	if err := config.ApplyEnv(fs, func(k string) (string, bool) { v, ok := vars[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c, err = c.Resolve(); err != nil {
		t.Fatal(err)
	}
	if err := tlsserve.CheckListen(c.Listen, c.TLSCertFile != "", c.InsecureHTTP, nil); err != nil {
		t.Fatalf("localrun would refuse the example: %v", err)
	}
	if c.TLSCertFile == "" || c.InsecureHTTP {
		t.Errorf("the example serves plain HTTP (listen %s, insecure-http %v)", c.Listen, c.InsecureHTTP)
	}
}
