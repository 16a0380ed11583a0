// Package reconcile destroys the custody keys that the metadata store no
// longer needs, so that what custody holds converges on what the store
// names even after crashes and store errors of unknown outcome.
//
// # Why
//
// A new CA key or KEK version is generated in custody before the store
// write that names it. When that write fails with an unknown outcome (a
// dropped connection, a cancelled request) the key is kept, since the write
// may have committed (see store.NotWritten); when the process dies between
// the two, nothing is left to clean up. A rekey destroys the retired key
// right after its commit, and a crash there leaves it in custody. The
// Reconciler collects both kinds.
//
// # What it destroys
//
// It lists custody (ListKeys: software blobs, PKCS#11 objects, Barbican
// secrets), then reads the refs the store names (store.KeyRefs). Among the
// listed keys whose ref has the form clusterkeys gives its keys
// ("ca/<cluster>/<generation>/<32 hex>" and "kek/<name>/v<version>/<16 hex>";
// anything else in custody is never touched) it destroys:
//
//   - the keys of retired CA generations, whatever their age: once a rekey
//     committed they sign nothing more (README: a rekey destroys the
//     retired key);
//   - the keys no row names (orphans) and older than the safety window, so
//     that a create or rekey in flight, whose key exists but whose row is
//     not written yet, is never collected.
//
// Listing custody before reading the store means a key listed and then
// stored is seen as referenced. A backend that cannot say when a key was
// made (PKCS#11) is given the time the reconciler first saw the key,
// recorded in the store (FirstSeen), so its window counts from then.
//
// # One instance at a time
//
// Every instance runs a Reconciler (at start and every interval), but a
// run first takes a lease in the store (a compare-and-swap on a row), so
// two instances never run at once; the others skip that round. The run is
// bounded by the lease's duration.
//
// Logs carry counts and refs, never key material.
package reconcile

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// Defaults of Options.
const (
	// DefaultSafetyWindow is how old an unreferenced key must be before it
	// is destroyed: far longer than any create or rekey takes.
	DefaultSafetyWindow = time.Hour
	// DefaultInterval is the time between two runs.
	DefaultInterval = 15 * time.Minute
	// DefaultLeaseTTL bounds one run and is how long its lease lasts.
	DefaultLeaseTTL = 5 * time.Minute
	// LeaseName is the store lease the runs take.
	LeaseName = "custody-reconcile"
)

// Store is the part of the metadata store the reconciler uses;
// pkg/store/sqlite implements it.
type Store interface {
	// KeyRefs returns the refs the store names, live and retired.
	KeyRefs(ctx context.Context) (store.KeyRefs, error)
	// AcquireLease takes lease name for holder until now+ttl when it is
	// free, expired or already holder's, and reports whether it did.
	AcquireLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error)
	// ReleaseLease gives up lease name if holder holds it.
	ReleaseLease(ctx context.Context, name, holder string) error
	// FirstSeen records now for the refs seen for the first time, forgets
	// the refs not given, and returns when each given ref was first seen.
	FirstSeen(ctx context.Context, refs []string, now time.Time) (map[string]time.Time, error)
}

// Custody is key custody that can list what it holds.
type Custody interface {
	// ListKeys returns every key custody holds (refs, never material).
	ListKeys(ctx context.Context) ([]keys.Listed, error)
	// Destroy deletes the key named ref; a missing key is not an error.
	Destroy(ctx context.Context, ref string) error
}

// Options configure a Reconciler. The zero value is usable.
type Options struct {
	// SafetyWindow is how old an unreferenced key must be before it is
	// destroyed; DefaultSafetyWindow when 0.
	SafetyWindow time.Duration
	// Interval is the time between runs of Run; DefaultInterval when 0.
	Interval time.Duration
	// LeaseTTL bounds a run; DefaultLeaseTTL when 0.
	LeaseTTL time.Duration
	// Holder names this instance in the lease; random when empty.
	Holder string
	// Logger receives counts and the refs destroyed; slog.Default when nil.
	Logger *slog.Logger
	// Registerer receives the metrics; none when nil.
	Registerer metrics.Registerer
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
}

// Result counts what one run found and did.
type Result struct {
	// Listed is how many keys custody listed with a clusterkeys ref.
	Listed int
	// Live is how many of them the store names as live.
	Live int
	// Retired is how many belong to retired CA generations (destroyed).
	Retired int
	// Orphans is how many no row names and are older than the window
	// (destroyed).
	Orphans int
	// Young is how many no row names yet but are within the window (kept).
	Young int
	// Destroyed is how many of Retired and Orphans were destroyed; the
	// others failed and are tried again next run.
	Destroyed int
}

// Reconciler destroys the custody keys the store does not need.
type Reconciler struct {
	st      Store
	custody Custody
	opts    Options
	log     *slog.Logger
	runs    *metrics.CounterVec
	keys    *metrics.CounterVec
}

// New returns a Reconciler over st and c.
func New(st Store, c Custody, opts Options) *Reconciler {
	if opts.SafetyWindow <= 0 {
		opts.SafetyWindow = DefaultSafetyWindow
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.Holder == "" {
		var b [8]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		opts.Holder = hex.EncodeToString(b[:])
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Reconciler{st: st, custody: c, opts: opts, log: opts.Logger}
	r.runs, _ = metrics.Register(opts.Registerer, metrics.NewCounterVec(metrics.CounterOpts{
		Name: "clusterkeys_reconcile_runs_total",
		Help: "Custody reconciler runs by result: ok, error, or skipped (another instance held the lease).",
	}, []string{"result"}))
	r.keys, _ = metrics.Register(opts.Registerer, metrics.NewCounterVec(metrics.CounterOpts{
		Name: "clusterkeys_reconcile_keys_destroyed_total",
		Help: "Custody keys the reconciler destroyed, by reason: orphan (no row names it) or retired (CA generation replaced by a rekey).",
	}, []string{"reason"}))
	return r
}

// The forms of the refs clusterkeys gives its keys (ca.newKeyRef,
// keywrap's newVersion); cluster and KEK names never contain '/'.
// It is compiled on first use: the functions that link this package but
// never reconcile (Lambda) do not pay for it at start.
var ownedRef = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(ca/[A-Za-z0-9._-]+/[0-9]+/[0-9a-f]{32}|kek/[A-Za-z0-9._-]+/v[0-9]+/[0-9a-f]{16})$`)
})

// Run runs the reconciler at once and then every interval until ctx ends.
func (r *Reconciler) Run(ctx context.Context) {
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		if _, _, err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("custody reconcile failed; trying again at the next interval", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunOnce runs the reconciler once if it can take the lease, and reports
// what it did and whether it ran.
func (r *Reconciler) RunOnce(ctx context.Context) (res Result, ran bool, err error) {
	defer func() {
		switch {
		case err != nil:
			r.runs.WithLabelValues("error").Inc()
		case !ran:
			r.runs.WithLabelValues("skipped").Inc()
		default:
			r.runs.WithLabelValues("ok").Inc()
		}
	}()
	got, err := r.st.AcquireLease(ctx, LeaseName, r.opts.Holder, r.opts.Now(), r.opts.LeaseTTL)
	if err != nil {
		return Result{}, false, fmt.Errorf("reconcile: %w", err)
	}
	if !got {
		r.log.Debug("custody reconcile skipped: another instance holds the lease")
		return Result{}, false, nil
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := r.st.ReleaseLease(rctx, LeaseName, r.opts.Holder); err != nil {
			r.log.Warn("cannot release the reconcile lease; it expires by itself", "err", err)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, r.opts.LeaseTTL)
	defer cancel()
	res, err = r.reconcile(ctx)
	if err != nil {
		return res, true, err
	}
	r.log.Info("custody reconciled", "listed", res.Listed, "live", res.Live, "retired", res.Retired,
		"orphans", res.Orphans, "young", res.Young, "destroyed", res.Destroyed)
	return res, true, nil
}

func (r *Reconciler) reconcile(ctx context.Context) (Result, error) {
	var res Result
	// Custody first: a key listed here and stored before KeyRefs reads is
	// seen as referenced.
	listed, err := r.custody.ListKeys(ctx)
	if err != nil {
		return res, fmt.Errorf("reconcile: list custody: %w", err)
	}
	refs, err := r.st.KeyRefs(ctx)
	if err != nil {
		return res, fmt.Errorf("reconcile: read the store's key refs: %w", err)
	}
	live := set(refs.Live)
	retired := set(refs.Retired)
	now := r.opts.Now()
	var retire, unnamed []keys.Listed
	var undated []string
	for _, k := range listed {
		if !ownedRef().MatchString(k.Ref) {
			continue
		}
		res.Listed++
		switch {
		case live[k.Ref]:
			res.Live++
		case retired[k.Ref]:
			retire = append(retire, k)
		default:
			unnamed = append(unnamed, k)
			if k.Created.IsZero() {
				undated = append(undated, k.Ref)
			}
		}
	}
	seen, err := r.st.FirstSeen(ctx, undated, now)
	if err != nil {
		return res, fmt.Errorf("reconcile: %w", err)
	}
	var orphans []keys.Listed
	for _, k := range unnamed {
		born := k.Created
		if born.IsZero() {
			born = seen[k.Ref]
		}
		if born.IsZero() || now.Sub(born) < r.opts.SafetyWindow {
			res.Young++
			continue
		}
		orphans = append(orphans, k)
	}
	res.Retired, res.Orphans = len(retire), len(orphans)
	var errs []error
	for _, batch := range []struct {
		reason string
		keys   []keys.Listed
	}{{"retired", retire}, {"orphan", orphans}} {
		for _, k := range batch.keys {
			if err := r.custody.Destroy(ctx, k.Ref); err != nil {
				errs = append(errs, fmt.Errorf("destroy %s key %s: %w", batch.reason, k.Ref, err))
				continue
			}
			res.Destroyed++
			r.keys.WithLabelValues(batch.reason).Inc()
			r.log.Info("custody reconcile destroyed a key", "reason", batch.reason, "key_ref", k.Ref)
		}
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("reconcile: %d of %d keys not destroyed, tried again next run: %w",
			len(errs), len(retire)+len(orphans), errors.Join(errs...))
	}
	return res, nil
}

func set(refs []string) map[string]bool {
	m := make(map[string]bool, len(refs))
	for _, r := range refs {
		m[r] = true
	}
	return m
}
