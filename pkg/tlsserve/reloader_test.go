package tlsserve

import (
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/testcert"
	"github.com/clusterkeys/clusterkeys/internal/testproc"
)

// handshake runs a TLS handshake between cfg and a client trusting pool over
// an in-memory pipe, and returns the serial the server presented.
func handshake(t *testing.T, cfg *tls.Config, client *tls.Config) (int64, error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srv := tls.Server(a, cfg)
	done := make(chan error, 1)
	go func() { done <- srv.Handshake(); a.Close() }()
	c := tls.Client(b, client)
	err := c.Handshake()
	b.Close()
	<-done
	if err != nil {
		return 0, err
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

// setup writes a first pair (serial 1) and returns a Reloader on it.
func setup(t testing.TB, interval time.Duration) (r *Reloader, ca *testcert.CA, certFile, keyFile string, logs *testproc.Output) {
	t.Helper()
	dir := t.TempDir()
	ca = testcert.NewCA(t, "tlsserve test CA")
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c, k := ca.Pair(t, 1)
	testcert.Replace(t, certFile, c)
	testcert.Replace(t, keyFile, k)
	logs = &testproc.Output{}
	r, err := NewReloader(certFile, keyFile, Options{CheckInterval: interval, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return r, ca, certFile, keyFile, logs
}

func TestReloader(t *testing.T) {
	t.Run("serves a rotated pair without a restart", func(t *testing.T) {
		r, ca, certFile, keyFile, logs := setup(t, 0)
		client := &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"}
		if got, err := handshake(t, r.TLSConfig(), client); err != nil || got != 1 {
			t.Fatalf("first handshake: serial %d, %v", got, err)
		}
		c, k := ca.Pair(t, 2)
		testcert.Replace(t, keyFile, k)
		testcert.Replace(t, certFile, c)
		if got, err := handshake(t, r.TLSConfig(), client); err != nil || got != 2 {
			t.Fatalf("after rotation: serial %d, %v; logs:\n%s", got, err, logs)
		}
		// Rewritten in place (same file, new contents) is seen too.
		c, k = ca.Pair(t, 3)
		if err := os.WriteFile(keyFile, k, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(certFile, c, 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := handshake(t, r.TLSConfig(), client); err != nil || got != 3 {
			t.Fatalf("after an in-place rewrite: serial %d, %v; logs:\n%s", got, err, logs)
		}
		if !strings.Contains(logs.String(), "certificate reloaded") {
			t.Errorf("no reload logged:\n%s", logs)
		}
	})

	t.Run("keeps the old pair when the new one is broken, and logs it once", func(t *testing.T) {
		r, ca, certFile, keyFile, logs := setup(t, 0)
		client := &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"}
		_, otherKey := ca.Pair(t, 9)
		c, _ := ca.Pair(t, 2)
		for _, broken := range []struct {
			what, file string
			b          []byte
		}{
			{"a key that does not match the certificate", keyFile, otherKey},
			{"a truncated certificate", certFile, c[:len(c)/2]},
			{"an empty key file", keyFile, nil},
		} {
			testcert.Replace(t, broken.file, broken.b)
			for range 3 {
				if got, err := handshake(t, r.TLSConfig(), client); err != nil || got != 1 {
					t.Fatalf("%s: serial %d, %v; want the old pair (1)", broken.what, got, err)
				}
			}
		}
		if n := strings.Count(logs.String(), "does not load"); n != 3 {
			t.Errorf("%d refusals logged for 3 broken pairs:\n%s", n, logs)
		}
		if strings.Contains(logs.String(), "PRIVATE KEY") {
			t.Errorf("key material in the logs:\n%s", logs)
		}
		// A good pair after the broken ones is served.
		c, k := ca.Pair(t, 4)
		testcert.Replace(t, certFile, c)
		testcert.Replace(t, keyFile, k)
		if got, err := handshake(t, r.TLSConfig(), client); err != nil || got != 4 {
			t.Fatalf("good pair after broken ones: serial %d, %v", got, err)
		}
	})

	t.Run("keeps the old pair while a file is missing", func(t *testing.T) {
		r, ca, _, keyFile, logs := setup(t, 0)
		client := &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"}
		if err := os.Remove(keyFile); err != nil {
			t.Fatal(err)
		}
		if got, err := handshake(t, r.TLSConfig(), client); err != nil || got != 1 {
			t.Fatalf("serial %d, %v; want the old pair (1)", got, err)
		}
		if !strings.Contains(logs.String(), "unreadable") {
			t.Errorf("missing file not logged:\n%s", logs)
		}
	})

	t.Run("looks at the files at most once per interval", func(t *testing.T) {
		r, ca, certFile, keyFile, _ := setup(t, time.Hour)
		c, k := ca.Pair(t, 2)
		testcert.Replace(t, certFile, c)
		testcert.Replace(t, keyFile, k)
		r.refresh(time.Now())
		if got := r.cur.Load().Leaf.SerialNumber.Int64(); got != 1 {
			t.Fatalf("reloaded within the interval: serial %d", got)
		}
		r.refresh(time.Now().Add(time.Hour + time.Second))
		if got := r.cur.Load().Leaf.SerialNumber.Int64(); got != 2 {
			t.Fatalf("not reloaded after the interval: serial %d", got)
		}
	})

	t.Run("refuses TLS older than 1.2", func(t *testing.T) {
		r, ca, _, _, _ := setup(t, 0)
		for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
			client := &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1", MinVersion: v, MaxVersion: v}
			if _, err := handshake(t, r.TLSConfig(), client); err == nil {
				t.Errorf("a client limited to %s completed a handshake", tls.VersionName(v))
			}
		}
		client := &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS12}
		if _, err := handshake(t, r.TLSConfig(), client); err != nil {
			t.Errorf("TLS 1.2: %v", err)
		}
	})

	t.Run("refuses to start on a bad pair", func(t *testing.T) {
		dir := t.TempDir()
		ca := testcert.NewCA(t, "tlsserve test CA")
		c, _ := ca.Pair(t, 1)
		_, k := ca.Pair(t, 2)
		certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		testcert.Replace(t, certFile, c)
		testcert.Replace(t, keyFile, k)
		if _, err := NewReloader(certFile, keyFile, Options{}); err == nil || !strings.Contains(err.Error(), certFile) {
			t.Errorf("mismatched pair: %v, want an error naming %s", err, certFile)
		}
		if _, err := NewReloader(certFile, filepath.Join(dir, "absent.key"), Options{}); err == nil {
			t.Error("absent key file accepted")
		}
	})
}

// BenchmarkGetCertificate is the cost a handshake pays for reloading: a
// cached pair (within the interval) and a stat of both files (interval 0).
func BenchmarkGetCertificate(b *testing.B) {
	for _, bc := range []struct {
		name     string
		interval time.Duration
	}{{"cached", time.Hour}, {"stat every handshake", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			r, _, _, _, _ := setup(b, bc.interval)
			for b.Loop() {
				if _, err := r.GetCertificate(nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
