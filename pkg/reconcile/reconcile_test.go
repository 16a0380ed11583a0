package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/ca"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
	"github.com/clusterkeys/clusterkeys/pkg/metrics/metricstest"
	"github.com/clusterkeys/clusterkeys/pkg/reconcile"
	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

var (
	_ reconcile.Store   = (*sqlite.DB)(nil)
	_ reconcile.Custody = (*software.Custody)(nil)
)

// failingStore is the real store whose next rekey or rotation fails with
// an unknown outcome and writes nothing: the new key is kept, unnamed.
type failingStore struct {
	*sqlite.DB
	fail atomic.Bool
}

var errLost = fmt.Errorf("connection reset: %w", api.ErrUnavailable)

func (s *failingStore) Rekey(ctx context.Context, cluster string, expected int, next store.CAGeneration, now, until time.Time) error {
	if s.fail.Swap(false) {
		return errLost
	}
	return s.DB.Rekey(ctx, cluster, expected, next, now, until)
}

func (s *failingStore) RotateKEK(ctx context.Context, name string, expected int, next store.KEKVersion) error {
	if s.fail.Swap(false) {
		return errLost
	}
	return s.DB.RotateKEK(ctx, name, expected, next)
}

// stuckCustody is software custody whose Destroy can fail (the process
// dies before it, as far as the store can tell) and whose listing can be
// undated (as PKCS#11's) or held.
type stuckCustody struct {
	*software.Custody
	noDestroy atomic.Bool
	undated   bool
	listing   chan struct{} // closed when ListKeys is entered
	hold      chan struct{} // ListKeys waits for it when set
}

func (c *stuckCustody) Destroy(ctx context.Context, ref string) error {
	if c.noDestroy.Load() {
		return fmt.Errorf("killed before destroy: %w", api.ErrUnavailable)
	}
	return c.Custody.Destroy(ctx, ref)
}

func (c *stuckCustody) ListKeys(ctx context.Context) ([]keys.Listed, error) {
	if c.hold != nil {
		close(c.listing)
		<-c.hold
	}
	ls, err := c.Custody.ListKeys(ctx)
	if c.undated {
		for i := range ls {
			ls[i].Created = time.Time{}
		}
	}
	return ls, err
}

type world struct {
	db      *sqlite.DB
	st      *failingStore
	custody *stuckCustody
	ca      *ca.Authority
	kw      *keywrap.Service
	path    string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "clusterkeys.db")
	db := openDB(t, path)
	mk, err := software.LoadOrCreateMasterKey(context.Background(), filepath.Join(dir, "master.key"), db)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := software.New(mk, db)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{db: db, st: &failingStore{DB: db}, custody: &stuckCustody{Custody: sc}, path: path}
	log := slog.New(slog.DiscardHandler)
	w.ca = ca.New(w.st, w.custody, ca.Options{Logger: log})
	w.kw = keywrap.New(w.st, w.custody, keywrap.Options{Logger: log, ActiveTTL: -1})
	return w
}

func openDB(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var admin = auth.WithPrincipal(context.Background(), auth.Principal{User: "root", Project: "admin", Roles: []string{auth.RoleAdmin}})

// blobs returns the refs software custody holds, sorted.
func (w *world) blobs(t *testing.T) []string {
	t.Helper()
	bs, err := w.db.ListBlobs(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, b := range bs {
		refs = append(refs, b.Ref)
	}
	return refs
}

// live returns the refs the store names as live, sorted.
func (w *world) live(t *testing.T) []string {
	t.Helper()
	refs, err := w.db.KeyRefs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(refs.Live)
	return refs.Live
}

// fill makes: two live CAs (one rekeyed, its retired key left in custody
// as after a crash), a KEK rotated once, one orphan CA key and one orphan
// KEK key (store writes of unknown outcome), and two foreign blobs.
func (w *world) fill(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, c := range []string{"a", "b"} {
		if _, _, err := w.ca.CreateCA(admin, c, ca.CreateRequest{ProjectID: "p"}); err != nil {
			t.Fatal(err)
		}
	}
	w.custody.noDestroy.Store(true)
	if _, err := w.ca.Rekey(admin, "a", ca.RekeyRequest{}); err != nil {
		t.Fatal(err)
	}
	w.custody.noDestroy.Store(false)
	w.st.fail.Store(true)
	if _, err := w.ca.Rekey(admin, "b", ca.RekeyRequest{}); !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("failed rekey = %v", err)
	}
	if _, _, _, err := w.kw.Create(ctx, "etcd", "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.kw.Rotate(ctx, "etcd", 0); err != nil {
		t.Fatal(err)
	}
	w.st.fail.Store(true)
	if _, err := w.kw.Rotate(ctx, "etcd", 0); !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("failed rotate = %v", err)
	}
	for _, ref := range []string{"barbican/ca/a/1/" + strings.Repeat("0", 32), "someone-else/key"} {
		if err := w.db.PutBlob(ctx, ref, []byte("not ours")); err != nil {
			t.Fatal(err)
		}
	}
}

func (w *world) reconciler(clock func() time.Time, reg metrics.Registerer) *reconcile.Reconciler {
	return reconcile.New(w.db, w.custody, reconcile.Options{
		Logger: slog.New(slog.DiscardHandler), Now: clock, Registerer: reg, SafetyWindow: time.Hour,
	})
}

func later(d time.Duration) func() time.Time { return func() time.Time { return time.Now().Add(d) } }

func TestReconcileCollectsOrphansAndRetiredKeysOnly(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	w.fill(t)
	live := w.live(t)
	if n := len(w.blobs(t)); n != len(live)+3+2 {
		t.Fatalf("custody holds %d blobs, want %d live + 1 retired + 2 orphans + 2 foreign", n, len(live))
	}
	foreign := []string{"barbican/ca/a/1/" + strings.Repeat("0", 32), "someone-else/key"}

	t.Run("within the safety window only the retired key goes", func(t *testing.T) {
		res, ran, err := w.reconciler(time.Now, nil).RunOnce(ctx)
		if err != nil || !ran {
			t.Fatalf("RunOnce = %v, ran %v", err, ran)
		}
		want := reconcile.Result{Listed: len(live) + 3, Live: len(live), Retired: 1, Young: 2, Destroyed: 1}
		if res != want {
			t.Fatalf("result %+v, want %+v", res, want)
		}
		if n := len(w.blobs(t)); n != len(live)+2+2 {
			t.Fatalf("custody holds %d blobs, want the young orphans and foreign blobs kept", n)
		}
	})
	t.Run("past the window the orphans go and exactly the live keys stay", func(t *testing.T) {
		reg := metrics.NewRegistry()
		res, _, err := w.reconciler(later(61*time.Minute), reg).RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := reconcile.Result{Listed: len(live) + 2, Live: len(live), Orphans: 2, Destroyed: 2}
		if res != want {
			t.Fatalf("result %+v, want %+v", res, want)
		}
		got := w.blobs(t)
		wantBlobs := slices.Sorted(slices.Values(append(slices.Clone(live), foreign...)))
		if !slices.Equal(got, wantBlobs) {
			t.Fatalf("custody holds %v, want %v", got, wantBlobs)
		}
		if n := counter(t, reg, "clusterkeys_reconcile_keys_destroyed_total", "orphan"); n != 2 {
			t.Fatalf("orphan metric %v, want 2", n)
		}
	})
	t.Run("every live CA and KEK still works", func(t *testing.T) {
		for _, c := range []string{"a", "b"} {
			if _, err := w.ca.Rekey(admin, c, ca.RekeyRequest{}); err != nil {
				t.Fatalf("rekey %s: %v", c, err)
			}
		}
		if _, _, err := w.kw.Wrap(ctx, "etcd", []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
	})
}

// counter returns the value of counter name's series whose reason is label.
func counter(t *testing.T, reg *metrics.Registry, name, label string) float64 {
	t.Helper()
	return metricstest.Value(t, reg, name, map[string]string{"reason": label})
}

func TestAnUndatedKeyIsCollectedAWindowAfterItWasFirstSeen(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	w.fill(t)
	w.custody.undated = true
	for _, step := range []struct {
		at      time.Duration
		orphans int
		young   int
	}{
		{0, 0, 2},             // first seen now
		{2 * time.Hour, 2, 0}, // a window later
		{3 * time.Hour, 0, 0}, // gone
	} {
		res, _, err := w.reconciler(later(step.at), nil).RunOnce(ctx)
		if err != nil || res.Orphans != step.orphans || res.Young != step.young {
			t.Fatalf("at +%v: %+v, %v; want %d orphans, %d young", step.at, res, err, step.orphans, step.young)
		}
	}
}

func TestOnlyOneInstanceRunsAtATime(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	w.fill(t)
	// A second instance: its own store handle on the same file.
	other := reconcile.New(openDB(t, w.path), w.custody.Custody, reconcile.Options{Logger: slog.New(slog.DiscardHandler)})
	w.custody.listing, w.custody.hold = make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		_, ran, err := w.reconciler(time.Now, nil).RunOnce(ctx)
		if err == nil && !ran {
			err = errors.New("the first instance did not run")
		}
		done <- err
	}()
	<-w.custody.listing // the first run holds the lease now
	if _, ran, err := other.RunOnce(ctx); err != nil || ran {
		t.Fatalf("second instance: ran %v, %v; want skipped", ran, err)
	}
	close(w.custody.hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Released: the other instance runs now.
	if _, ran, err := other.RunOnce(ctx); err != nil || !ran {
		t.Fatalf("after release: ran %v, %v", ran, err)
	}
}
