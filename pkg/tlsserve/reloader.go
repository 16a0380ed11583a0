// Package tlsserve is how clusterkeys serves HTTPS itself, as kube-apiserver
// and Vault do: a certificate pair read from two files and reloaded when
// they change, TLS 1.2 or later, and the rule that only a loopback address
// may be served in plain HTTP.
//
// # Reloading
//
// A [Reloader] hands the TLS stack the current pair through
// tls.Config.GetCertificate. At most once per CheckInterval a handshake
// stats both files; when either changed (size, modification time, or a
// different file, as after a rename or a Kubernetes secret volume's symlink
// swap) the pair is read again. A new pair that does not load (half-written,
// a key that does not match the certificate) is logged and the previous
// pair keeps serving; the next change is tried again. No restart is needed
// to rotate a certificate.
//
// # Listen policy
//
// [CheckListen] refuses a non-loopback address without TLS: bearer tokens,
// CSRs and unwrapped keys must not cross a network in clear. Loopback
// (127.0.0.0/8, ::1, localhost) stays plain HTTP by default; an explicit
// insecure flag allows plain HTTP elsewhere (behind a TLS-terminating proxy)
// and is logged as a warning.
package tlsserve

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCheckInterval is how long after a look at the files a handshake
// trusts them unchanged.
const DefaultCheckInterval = time.Second

// Options configure a Reloader.
type Options struct {
	// CheckInterval is how long after a look at the files they are trusted
	// unchanged; zero stats them on every handshake.
	CheckInterval time.Duration
	// Logger receives reloads and refused pairs; none when nil.
	Logger *slog.Logger
}

// Reloader serves the certificate pair in two files and reloads it when the
// files change. It is safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	interval          time.Duration
	log               *slog.Logger

	cur     atomic.Pointer[tls.Certificate]
	checked atomic.Int64 // unix nanoseconds of the last look at the files

	mu   sync.Mutex // serialises looks at the files
	seen [2]os.FileInfo
}

// NewReloader loads the pair in certFile and keyFile (PEM, as
// tls.LoadX509KeyPair reads them) and returns a Reloader serving it.
func NewReloader(certFile, keyFile string, o Options) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, interval: o.CheckInterval, log: o.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	// Stat before reading: a change between the two is seen at the next look.
	seen, err := r.stat()
	if err != nil {
		return nil, err
	}
	cert, err := r.load()
	if err != nil {
		return nil, err
	}
	r.seen = seen
	r.cur.Store(cert)
	r.checked.Store(time.Now().UnixNano())
	if seen[1].Mode().Perm()&0o077 != 0 {
		r.log.Warn("tls: the private key file is readable by group or others", "key_file", keyFile, "mode", seen[1].Mode().Perm().String())
	}
	r.log.Info("tls: serving certificate", certAttrs(cert)...)
	return r, nil
}

// TLSConfig returns a server configuration serving r's pair with TLS 1.2 or
// later.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}

// GetCertificate returns the current pair, first reloading it when the files
// changed; it fits tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.refresh(time.Now())
	return r.cur.Load(), nil
}

// refresh looks at the files when the last look is older than the interval
// and loads the pair again when they changed.
func (r *Reloader) refresh(now time.Time) {
	due := func() bool { return now.UnixNano()-r.checked.Load() >= int64(r.interval) }
	if !due() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !due() { // another handshake looked meanwhile
		return
	}
	r.checked.Store(now.UnixNano())
	seen, err := r.stat()
	if err != nil {
		// A rotation may be half done (a file briefly absent): keep serving,
		// say so once, and look again later.
		if r.seen[0] != nil {
			r.log.Error("tls: certificate files unreadable; still serving the previous certificate", "err", err)
			r.seen = [2]os.FileInfo{}
		}
		return
	}
	if sameFile(seen[0], r.seen[0]) && sameFile(seen[1], r.seen[1]) {
		return
	}
	// Remember what was tried, so a broken pair is logged once, not on every
	// handshake; the next change of either file is tried again.
	r.seen = seen
	cert, err := r.load()
	if err != nil {
		r.log.Error("tls: the new certificate pair does not load; still serving the previous certificate", "err", err)
		return
	}
	r.cur.Store(cert)
	r.log.Info("tls: certificate reloaded", certAttrs(cert)...)
}

func (r *Reloader) stat() ([2]os.FileInfo, error) {
	var seen [2]os.FileInfo
	for i, name := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return seen, fmt.Errorf("tls certificate pair: %w", err)
		}
		seen[i] = fi
	}
	return seen, nil
}

func (r *Reloader) load() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		// The files' names, never their contents.
		return nil, fmt.Errorf("tls certificate pair %s, %s: %w", r.certFile, r.keyFile, err)
	}
	return &cert, nil
}

// sameFile reports whether b, an earlier stat of a path, still describes a.
func sameFile(a, b os.FileInfo) bool {
	return b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

func certAttrs(c *tls.Certificate) []any {
	if c.Leaf == nil {
		return nil
	}
	return []any{"subject", c.Leaf.Subject.String(), "serial", c.Leaf.SerialNumber.Text(16), "not_after", c.Leaf.NotAfter.UTC()}
}
