package kmsplugin_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/clusterkeys/clusterkeys/pkg/kmsplugin"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
)

// socketDir returns a short directory for unix sockets (t.TempDir paths can
// exceed the 107-byte limit of sun_path).
func socketDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "kms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// serve starts a Server on a fresh socket and stops it at cleanup.
func serve(t *testing.T, p *kmsplugin.Plugin, m *kmsplugin.Metrics) *kmsplugin.Server {
	t.Helper()
	sock := filepath.Join(socketDir(t), "kms.sock")
	srv, err := kmsplugin.Listen("unix://"+sock, p, kmsplugin.ServerOptions{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv
}

func dial(t *testing.T, path string) kmsapi.KeyManagementServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return kmsapi.NewKeyManagementServiceClient(cc)
}

func TestServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t.Run("should encrypt, decrypt and report status through a unix socket of mode 0600", func(t *testing.T) {
		f := newFixture(t)
		m, err := kmsplugin.NewMetrics(nil)
		if err != nil {
			t.Fatal(err)
		}
		srv := serve(t, f.p, m)
		fi, err := os.Stat(srv.Path())
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
			t.Fatalf("socket mode = %v, want a socket with 0600", fi.Mode())
		}
		c := dial(t, srv.Path())
		st, err := c.Status(ctx, &kmsapi.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if st.Healthz != "ok" || st.Version != "v2" || st.KeyId != f.env.keyID(1) {
			t.Fatalf("status = %v", st)
		}
		s := seed(t)
		er, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: s, Uid: "u1"})
		if err != nil {
			t.Fatal(err)
		}
		if er.KeyId != st.KeyId {
			t.Fatalf("encrypt key_id %q differs from status key_id %q", er.KeyId, st.KeyId)
		}
		dr, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: er.Ciphertext, KeyId: er.KeyId, Uid: "u2", Annotations: er.Annotations})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dr.Plaintext, s) {
			t.Fatal("plaintext differs after the round trip")
		}
	})
	t.Run("should answer a call while every stream worker is held by a hung custody", func(t *testing.T) {
		f := newFixture(t)
		srv := serve(t, f.p, nil)
		c := dial(t, srv.Path())
		s := seed(t)
		er, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: s, Uid: "u1"})
		if err != nil {
			t.Fatal(err)
		}
		hang := make(chan struct{})
		f.env.setHang(hang)
		released := false
		release := func() {
			if !released {
				released = true
				close(hang)
			}
		}
		defer release()
		wraps0, _ := f.env.counts()
		held := kmsplugin.StreamWorkers + 2
		errc := make(chan error, held)
		for range held {
			go func() {
				_, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: s, Uid: "held"})
				errc <- err
			}()
		}
		for {
			if w, _ := f.env.counts(); w-wraps0 == held {
				break
			}
			if ctx.Err() != nil {
				t.Fatal("the held Encrypt calls did not all reach custody")
			}
			time.Sleep(5 * time.Millisecond)
		}
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		defer dcancel()
		dr, err := c.Decrypt(dctx, &kmsapi.DecryptRequest{Ciphertext: er.Ciphertext, KeyId: er.KeyId, Uid: "u2"})
		if err != nil {
			t.Fatalf("Decrypt while %d calls hold every worker: %v", held, err)
		}
		if !bytes.Equal(dr.Plaintext, s) {
			t.Fatal("plaintext differs after the round trip")
		}
		release()
		for range held {
			if err := <-errc; err != nil {
				t.Errorf("held Encrypt: %v", err)
			}
		}
	})
	t.Run("should fail the Status RPC while custody is down", func(t *testing.T) {
		f := newFixture(t)
		srv := serve(t, f.p, nil)
		f.env.setDown(errCustodyDown)
		if st, err := dial(t, srv.Path()).Status(ctx, &kmsapi.StatusRequest{}); err == nil {
			t.Fatalf("status = %v with custody down", st)
		}
	})
}

func TestListenSocketFile(t *testing.T) {
	f := newFixture(t)
	t.Run("removes a stale socket left by a dead process", func(t *testing.T) {
		sock := filepath.Join(socketDir(t), "kms.sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close() // the file stays, nobody accepts: stale
		srv, err := kmsplugin.Listen("unix://"+sock, f.p, kmsplugin.ServerOptions{})
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		srv.Close()
	})
	t.Run("refuses a socket another process serves on", func(t *testing.T) {
		sock := filepath.Join(socketDir(t), "kms.sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		if srv, err := kmsplugin.Listen("unix://"+sock, f.p, kmsplugin.ServerOptions{}); err == nil {
			srv.Close()
			t.Fatal("Listen took over a live socket")
		}
	})
	t.Run("refuses to replace a file that is not a socket", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "kms.sock")
		if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
			t.Fatal(err)
		}
		if srv, err := kmsplugin.Listen("unix://"+path, f.p, kmsplugin.ServerOptions{}); err == nil {
			srv.Close()
			t.Fatal("Listen replaced a regular file")
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "keep me" {
			t.Fatalf("file changed: %q, %v", b, err)
		}
	})
	t.Run("creates the socket directory with 0700", func(t *testing.T) {
		dir := filepath.Join(socketDir(t), "run")
		srv, err := kmsplugin.Listen("unix://"+dir+"/kms.sock", f.p, kmsplugin.ServerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("dir mode = %v, %v", fi.Mode(), err)
		}
	})
	t.Run("shutdown removes the socket", func(t *testing.T) {
		sock := filepath.Join(socketDir(t), "kms.sock")
		srv, err := kmsplugin.Listen("unix://"+sock, f.p, kmsplugin.ServerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve() }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("Serve after Shutdown: %v", err)
		}
		if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("socket still there after shutdown: %v", err)
		}
	})
}

func TestParseListenAddress(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"an absolute unix URL", "unix:///var/run/kms.sock", "/var/run/kms.sock", true},
		{"an unclean path is cleaned", "unix:///var/run/../run/./kms.sock", "/var/run/kms.sock", true},
		{"a relative path is refused", "unix://kms.sock", "", false},
		{"a bare path is refused", "/var/run/kms.sock", "", false},
		{"a TCP address is refused", "tcp://127.0.0.1:1", "", false},
		{"an empty path is refused", "unix://", "", false},
		{"a directory is refused", "unix:///var/run/", "", false},
		{"a path cleaning to the root is refused", "unix:///var/..", "", false},
		{"a NUL byte is refused", "unix:///var/run/k\x00ms.sock", "", false},
		{"a path too long for sun_path is refused", "unix:///" + strings.Repeat("a", 120), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kmsplugin.ParseListenAddress(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("ParseListenAddress(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
}

func FuzzParseListenAddress(f *testing.F) {
	for _, s := range []string{"unix:///var/run/kms.sock", "unix://", "unix:///a/../../b", "unix:////x//y/", "tcp://x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		p, err := kmsplugin.ParseListenAddress(addr)
		if err != nil {
			if p != "" {
				t.Fatalf("error with a path %q", p)
			}
			return
		}
		if !filepath.IsAbs(p) || filepath.Clean(p) != p || len(p) > 107 || strings.ContainsRune(p, 0) {
			t.Fatalf("ParseListenAddress(%q) = %q: not a clean absolute socket path", addr, p)
		}
		if p == "/" {
			t.Fatalf("ParseListenAddress(%q) = the root directory", addr)
		}
	})
}

func TestRun(t *testing.T) {
	env := newFakeEnvelope(t, "other")
	sock := filepath.Join(socketDir(t), "kms.sock")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := ln.Addr().String()
	ln.Close()
	o := kmsplugin.DefaultOptions()
	o.Listen = "unix://" + sock
	o.MetricsListen = metricsAddr
	o.StatusTTL = -1 // every /healthz is a real round trip
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *kmsplugin.Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- kmsplugin.Run(ctx, o, env, nil, func(s *kmsplugin.Server) { ready <- s })
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not become ready")
	}
	if env.creates != 1 || env.name != kmsplugin.DefaultKeyName {
		t.Fatalf("Run did not ensure the KEK: creates=%d name=%q", env.creates, env.name)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	if _, err := dial(t, sock).Status(rctx, &kmsapi.StatusRequest{}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`clusterkeys_kms_operations_total{code="OK",op="status"} 1`, "clusterkeys_kms_connections_total 1", "clusterkeys_kms_healthy 1"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for path, want := range map[string]int{"/livez": 200, "/healthz": 200} {
		resp, err := http.Get("http://" + metricsAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
	env.setDown(errCustodyDown)
	resp, err = http.Get("http://" + metricsAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET /healthz with custody down = %d, want 503", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not stop")
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket left after Run returned: %v", err)
	}
}

var _ metrics.Gatherer = metrics.NewRegistry()
