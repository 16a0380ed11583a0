package store

import (
	"context"
	"sync"
	"time"
)

// How the stores keep a certificate's expiry materialised (the lapsed
// mark of migration 0008): see MarkExpired in each store.
//
// A status=valid or status=expired listing reads the never-revoked
// certificates whose mark disagrees with their status at the listing's
// instant by not_after, and sorts them; the rest it walks in listing
// order. Both stay about a page while the marks keep up, so a listing by
// status that finds at least LapseBacklog expired certificates not yet
// marked marks them first, in transactions of at most LapseBatch rows; a
// store handle looks for that backlog at most every LapseProbeEvery per
// cluster.
// The marks only say where a listing looks for a row, never whether it
// matches, so a listing is exact whatever is marked, whoever marked it and
// whatever its clock.
const (
	// LapseBacklog is how many expired and unmarked certificates of a
	// cluster a listing by status sorts before it marks them.
	LapseBacklog = 64
	// LapseBatch bounds the rows one marking transaction updates (on
	// SQLite, LapseBatch with a not_after and LapseBatch without one, the
	// latter rare), so that
	// a large backlog (a registry migrated to 0008, or one not listed for a
	// long time) never holds the write lock for long: signs recorded
	// meanwhile commit between two batches (on SQLite, tens of
	// milliseconds apart).
	LapseBatch = 2000
)

// LapseProbeEvery is how often, at most, one store handle looks for a
// cluster's backlog of expired certificates not yet marked: a listing by
// status between two looks reads the few that expired meanwhile by
// not_after, as it reads any it finds.
const LapseProbeEvery = time.Second

// LapseBudget bounds the marking one listing does before it lists, so that
// a large backlog never holds a listing near its deadline: the marking
// goes on at the next look. Until the backlog is marked, listings read the
// unmarked expired as before migration 0008, walking in listing order.
const LapseBudget = time.Second

// LapseProbes says when a store handle looks for a cluster's backlog
// again, and remembers whether the last look left a large backlog. It is
// an in-process hint only: every instance keeps its own, and a listing is
// exact whether or not it looked, and whatever it remembers. The zero
// value is ready to use.
type LapseProbes struct {
	mu   sync.Mutex
	last map[string]lapseLook
}

type lapseLook struct {
	at    time.Time
	large bool
}

// Due reports whether the backlog of cluster is to be looked for now (and
// if so records that it is), and whether the last look left it large.
func (p *LapseProbes) Due(cluster string) (due, large bool) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	last, ok := p.last[cluster]
	if ok && now.Sub(last.at) < LapseProbeEvery {
		return false, last.large
	}
	if p.last == nil {
		p.last = map[string]lapseLook{}
	}
	p.last[cluster] = lapseLook{at: now, large: last.large}
	return true, last.large
}

// Looked records whether the look that Due allowed left the backlog of
// cluster large.
func (p *LapseProbes) Looked(cluster string, large bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l, ok := p.last[cluster]; ok {
		l.large = large
		p.last[cluster] = l
	}
}

// MarkBacklog is what a listing by status of cluster at now does first, in
// either store: at most every LapseProbeEvery per cluster and handle
// (probes), count up to LapseBacklog expired certificates not yet marked
// (count), and when there are that many, mark them (mark) for at most
// LapseBudget. It reports whether a large backlog is left (as far as this
// handle knows), which the listing then walks instead of sorting. A
// failure only leaves the listing slower, never wrong, so it is not the
// listing's error: the listing that follows reports a store that fails.
func MarkBacklog(ctx context.Context, probes *LapseProbes, cluster string,
	count func(ctx context.Context) (int, error),
	mark func(ctx context.Context, deadline time.Time) (done bool, err error)) (large bool) {
	due, large := probes.Due(cluster)
	if !due {
		return large
	}
	n, err := count(ctx)
	if err != nil {
		return large
	}
	large = false
	if n >= LapseBacklog {
		done, err := mark(ctx, time.Now().Add(LapseBudget))
		large = err != nil || !done
	}
	probes.Looked(cluster, large)
	return large
}
