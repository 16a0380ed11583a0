package ca

import (
	"sync"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// signerCache keeps loaded CA keys, so that a sign does not load and parse
// the key from custody each time. It holds at most one key per cluster: the
// key of the newest generation it has seen active. The store decides which
// generation is active (a sign reads it, or records under RequireActive), and with several instances on
// one store another instance may rekey at any time; so a sign that reads a
// newer generation evicts the cluster's older key at once (it is retired,
// and another instance may have destroyed it in custody), and a key older
// than the one cached is never served nor cached. The cache is bounded and
// evicts the least recently used cluster.
//
// With a key, an entry may also hold the cluster's row and active
// generation as a sign last read them and recorded under them (remember):
// the next sign of that cluster then reads nothing before signing. Such a
// reading may be stale (another instance rekeyed or set a new policy), so a
// sign that uses it records with RequireActive and RequirePolicy: the store
// refuses, in the recording write, a certificate whose generation or
// policy is no longer the cluster's, and the sign forgets the reading and
// signs again from a fresh one (see Authority.Sign).
type signerCache struct {
	mu      sync.Mutex
	max     int
	tick    uint64
	entries map[string]*cacheEntry // by cluster
}

type cacheEntry struct {
	ref  string
	gen  int
	key  caKey
	used uint64
	// rows is the cluster and its active generation (gen) as last read
	// by a sign that recorded under them; nil when none.
	rows *activeRows
}

// activeRows is a reading of a cluster and of its active generation.
type activeRows struct {
	cluster store.Cluster
	active  store.CAGeneration
}

func newSignerCache(max int) *signerCache {
	return &signerCache{max: max, entries: make(map[string]*cacheEntry)}
}

// get returns the cached key of gen. When the cluster's cached key belongs
// to an older generation, gen's arrival proves that key retired: it is
// dropped.
func (c *signerCache) get(gen store.CAGeneration) (caKey, bool) {
	if c.max <= 0 {
		return caKey{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[gen.Cluster]
	if !ok {
		return caKey{}, false
	}
	switch {
	case e.gen < gen.Generation:
		delete(c.entries, gen.Cluster)
		return caKey{}, false
	case e.gen > gen.Generation || e.ref != gen.KeyRef:
		return caKey{}, false
	}
	c.tick++
	e.used = c.tick
	return e.key, true
}

// put caches the key of gen unless a newer generation of its cluster is
// cached already (a sign that read the active generation just before a
// rekey must not bring the retired key back).
func (c *signerCache) put(gen store.CAGeneration, k caKey) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[gen.Cluster]; ok && e.gen > gen.Generation {
		return
	} else if !ok && len(c.entries) >= c.max {
		// Evict the least recently used entry: O(n), but n is small and
		// this runs only on a miss.
		var oldest string
		var min uint64
		first := true
		for cl, e := range c.entries {
			if first || e.used < min {
				oldest, min, first = cl, e.used, false
			}
		}
		delete(c.entries, oldest)
	}
	c.tick++
	c.entries[gen.Cluster] = &cacheEntry{ref: gen.KeyRef, gen: gen.Generation, key: k, used: c.tick}
}

// remember attaches to the cached key of active (if it is still the
// cluster's cached key) the reading c and active of its cluster, which a
// sign has just recorded under.
func (c *signerCache) remember(cl store.Cluster, active store.CAGeneration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[active.Cluster]; ok && e.gen == active.Generation && e.ref == active.KeyRef {
		e.rows = &activeRows{cluster: cl, active: active}
	}
}

// active returns the remembered reading of cluster and its key.
func (c *signerCache) active(cluster string) (activeRows, caKey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[cluster]
	if !ok || e.rows == nil {
		return activeRows{}, caKey{}, false
	}
	c.tick++
	e.used = c.tick
	return *e.rows, e.key, true
}

// forget drops the remembered reading of cluster, keeping its key: the
// next sign reads the cluster again.
func (c *signerCache) forget(cluster string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[cluster]; ok {
		e.rows = nil
	}
}

// remove drops the key named ref, if cached.
func (c *signerCache) remove(ref string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for cl, e := range c.entries {
		if e.ref == ref {
			delete(c.entries, cl)
		}
	}
}

func (c *signerCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
