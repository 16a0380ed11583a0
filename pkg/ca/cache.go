package ca

import "sync"

// signerCache keeps loaded CA keys by key reference, so that a sign does
// not load and parse the key from custody each time. Key references are
// never reused, so an entry never goes stale; the cache is bounded and
// evicts the least recently used entry.
type signerCache struct {
	mu      sync.Mutex
	max     int
	tick    uint64
	entries map[string]*cacheEntry
}

type cacheEntry struct {
	key  caKey
	used uint64
}

func newSignerCache(max int) *signerCache {
	return &signerCache{max: max, entries: make(map[string]*cacheEntry)}
}

func (c *signerCache) get(ref string) (caKey, bool) {
	if c.max <= 0 {
		return caKey{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[ref]
	if !ok {
		return caKey{}, false
	}
	c.tick++
	e.used = c.tick
	return e.key, true
}

func (c *signerCache) put(ref string, k caKey) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[ref]; !ok && len(c.entries) >= c.max {
		// Evict the least recently used entry: O(n), but n is small and
		// this runs only on a miss.
		var oldest string
		var min uint64
		first := true
		for r, e := range c.entries {
			if first || e.used < min {
				oldest, min, first = r, e.used, false
			}
		}
		delete(c.entries, oldest)
	}
	c.tick++
	c.entries[ref] = &cacheEntry{key: k, used: c.tick}
}

func (c *signerCache) remove(ref string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, ref)
}

func (c *signerCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
