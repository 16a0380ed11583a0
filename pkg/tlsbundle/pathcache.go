package tlsbundle

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"hash"
	"sync"
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
