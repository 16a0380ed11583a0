package tlsbundle

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"hash"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPathCacheSize is the number of successful path validations a
// Validator remembers (see Options.PathCacheSize): some 40 bytes each.
const DefaultPathCacheSize = 4096

// pathCache remembers the inputs of x509 path validations that succeeded
// with the chain anchoredChain asked for, so that a bundle validated again
// (a load balancer's certificate checked on every update, a client
// retrying) has its signatures checked once per process instead of once per
// request. It is safe for concurrent use.
//
// An entry is the SHA-256 of everything the outcome of
// (*x509.Certificate).Verify depends on in anchoredChain: the DER of the
// leaf, of the intermediates in the order they are put in the pool, and of
// the ca_bundle roots in order, each with its validity at the time of the
// request (before NotBefore, within, after NotAfter). The options are
// otherwise fixed (any extended key usage, no DNS name), and
// VerifyOptions.CurrentTime enters Verify only through those validity
// comparisons, so two requests with the same key get the same answer from
// Verify; the cache only spares computing it again. Only successes are
// remembered. Nothing is read from or written to a store, so instances do
// not share or invalidate anything: a certificate's bytes never change.
//
// The cache is bounded: when it is full, an arbitrary entry is dropped for
// each new one (Go's map iteration order), which keeps the cost of a flood
// of distinct valid bundles at that of no cache.
type pathCache struct {
	max int
	mu  sync.Mutex
	set map[[sha256.Size]byte]struct{}
}

func newPathCache(max int) *pathCache {
	if max <= 0 {
		return nil
	}
	return &pathCache{max: max, set: make(map[[sha256.Size]byte]struct{}, min(max, 256))}
}

// pathKey is the cache key of verifying leaf with the intermediates of
// links (links[0] is the leaf) against roots at now.
func pathKey(leaf *x509.Certificate, links []chainLink, roots []*x509.Certificate, now time.Time) [sha256.Size]byte {
	h := sha256.New()
	var hdr [5]byte
	put := func(tag byte, c *x509.Certificate) {
		hdr[0] = tag
		binary.BigEndian.PutUint32(hdr[1:], uint32(len(c.Raw)))
		h.Write(hdr[:])
		h.Write(c.Raw)
		h.Write([]byte{validity(c, now)})
	}
	put('L', leaf)
	for _, l := range links[1:] {
		put('I', l.cert)
	}
	for _, r := range roots {
		put('R', r)
	}
	return sum(h)
}

func sum(h hash.Hash) (k [sha256.Size]byte) {
	h.Sum(k[:0])
	return k
}

// validity is c's validity at now as x509 path validation judges it: 0
// within, 1 before NotBefore, 2 after NotAfter.
func validity(c *x509.Certificate, now time.Time) byte {
	switch {
	case now.Before(c.NotBefore):
		return 1
	case now.After(c.NotAfter):
		return 2
	}
	return 0
}

// has reports whether key is remembered; a nil cache remembers nothing.
func (pc *pathCache) has(key [sha256.Size]byte) bool {
	if pc == nil {
		return false
	}
	pc.mu.Lock()
	_, ok := pc.set[key]
	pc.mu.Unlock()
	return ok
}

// add remembers key, dropping another entry when the cache is full.
func (pc *pathCache) add(key [sha256.Size]byte) {
	if pc == nil {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if _, ok := pc.set[key]; ok {
		return
	}
	if len(pc.set) >= pc.max {
		for k := range pc.set {
			delete(pc.set, k)
			break
		}
	}
	pc.set[key] = struct{}{}
}

// len is the number of entries.
func (pc *pathCache) len() int {
	if pc == nil {
		return 0
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return len(pc.set)
}

// Bounds of a Validator's certificate cache (see certCache).
const (
	// certCacheBytes is the DER the cache holds at most, all certificates
	// added up; the parsed certificates take about as much again.
	certCacheBytes = 4 << 20
	// certCacheMaxDER is the largest certificate it holds.
	certCacheMaxDER = 16 << 10
)

// certCache remembers parsed certificates by their DER, as crypto/tls's
// certificate cache does for the certificates of its connections, so that
// the intermediates and ca_bundle roots every request of a client repeats
// are parsed once per process. A parsed *x509.Certificate is never
// modified, by this package or by crypto/x509, so requests share it. A DER
// that does not parse is not remembered (its error is computed again). It
// is safe for concurrent use, and bounded like pathCache: when full, an
// arbitrary entry is dropped for each new one.
type certCache struct {
	maxBytes int
	mu       sync.Mutex
	bytes    int
	m        map[string]*cachedCert
}

// cachedCert is a parsed certificate and, once a report has shown it, its
// text.
type cachedCert struct {
	cert *x509.Certificate
	text atomic.Pointer[certText]
}

func newCertCache(maxBytes int) *certCache {
	return &certCache{maxBytes: maxBytes, m: make(map[string]*cachedCert)}
}

// parse is parseCertificate through the cache; a nil cache parses.
func (cc *certCache) parse(der []byte) (*x509.Certificate, error) {
	if cc == nil {
		return parseCertificate(der)
	}
	cc.mu.Lock()
	e := cc.m[string(der)]
	cc.mu.Unlock()
	if e != nil {
		return e.cert, nil
	}
	c, err := parseCertificate(der)
	if err != nil || len(der) > certCacheMaxDER || len(der) > cc.maxBytes {
		return c, err
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if _, ok := cc.m[string(der)]; ok {
		return c, nil
	}
	for k := range cc.m {
		if cc.bytes+len(der) <= cc.maxBytes {
			break
		}
		delete(cc.m, k)
		cc.bytes -= len(k)
	}
	cc.m[string(c.Raw)] = &cachedCert{cert: c}
	cc.bytes += len(c.Raw)
	return c, nil
}

// text is describe(c) with its PEM, computed once for a certificate of the
// cache (the subject and issuer names take as long to write out as the
// rest of a validation); a nil cache, or a certificate it does not hold,
// describes it (without the PEM).
func (cc *certCache) text(c *x509.Certificate) certText {
	if cc == nil {
		return describe(c)
	}
	cc.mu.Lock()
	e := cc.m[string(c.Raw)]
	cc.mu.Unlock()
	if e == nil || e.cert != c {
		return describe(c)
	}
	if t := e.text.Load(); t != nil {
		return *t
	}
	t := describe(c)
	t.pem = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	e.text.Store(&t)
	return t
}

// size is the number of certificates and their DER bytes.
func (cc *certCache) size() (n, bytes int) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return len(cc.m), cc.bytes
}
