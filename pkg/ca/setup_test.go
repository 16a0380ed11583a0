package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/fakeclock"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// The package's tests run on the real SQLite store, in t.TempDir(), and
// software custody. A test that injects a fault wraps one of them in a type
// that embeds it and overrides the one method the fault is in.

// testStart is the fixture clock's start.
var testStart = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newMasterKey returns a random software master key.
func newMasterKey(t testing.TB) []byte {
	t.Helper()
	master := make([]byte, software.MasterKeySize)
	if _, err := rand.Read(master); err != nil {
		t.Fatal(err)
	}
	return master
}

// openInstance opens the SQLite store at path, closed at cleanup, and
// software custody under master on it, as one clusterkeys instance does;
// another call with the same path and master is another instance.
func openInstance(t testing.TB, path string, master []byte) (*sqlite.DB, *software.Custody) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	k, err := software.New(master, db)
	if err != nil {
		t.Fatal(err)
	}
	return db, k
}

// fixture is an Authority on a fresh store and custody, at testStart on a
// fake clock.
type fixture struct {
	a     *Authority
	st    *sqlite.DB
	keys  *keyLog
	clock *fakeclock.Clock
	opts  Options // a's, clock and logger included
}

// newFixture returns a fixture whose Authority has opts, with the fixture's
// clock and, unless opts has one, a logger that discards.
func newFixture(t testing.TB, opts Options) *fixture {
	t.Helper()
	db, custody := openInstance(t, filepath.Join(t.TempDir(), "clusterkeys.db"), newMasterKey(t))
	f := &fixture{st: db, keys: &keyLog{Custody: custody}, clock: fakeclock.New(testStart)}
	opts.Now = f.clock.Now
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	f.opts = opts
	f.a = New(f.st, f.keys, opts)
	return f
}

// with returns another Authority with f.a's options on st and k: a second
// instance, or one whose store or custody the test wrapped.
func (f *fixture) with(st Store, k Keys) *Authority { return New(st, k, f.opts) }

// mustCreate creates cluster as member of p1.
func (f *fixture) mustCreate(t testing.TB, cluster string, req CreateRequest) Resource {
	t.Helper()
	res, created, err := f.a.CreateCA(as(member), cluster, req)
	if err != nil || !created {
		t.Fatalf("CreateCA(%s) = created %v, %v", cluster, created, err)
	}
	return res
}

// all returns every registry entry of cluster, newest first.
func (f *fixture) all(t testing.TB, cluster string) []store.IssuedCertificate {
	t.Helper()
	certs, err := f.st.Certificates(context.Background(), store.CertificateQuery{Cluster: cluster, Now: f.clock.Now(), Limit: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// liveRefs returns the refs of the keys custody holds, sorted.
func (f *fixture) liveRefs(t testing.TB) []string {
	t.Helper()
	listed, err := f.keys.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, l := range listed {
		refs = append(refs, l.Ref)
	}
	slices.Sort(refs)
	return refs
}

// keyLog is the fixture's software custody, recording what the Authority
// asked of it: the refs it generated and destroyed, and how many signers it
// loaded. A ref is never generated twice.
type keyLog struct {
	*software.Custody
	mu                   sync.Mutex
	generated, destroyed []string
	signerCalls          int
}

func (k *keyLog) GenerateSigner(ctx context.Context, ref string, alg keys.Algorithm) (crypto.Signer, error) {
	k.mu.Lock()
	reused := slices.Contains(k.generated, ref)
	k.mu.Unlock()
	if reused {
		return nil, fmt.Errorf("key ref %q reused", ref)
	}
	s, err := k.Custody.GenerateSigner(ctx, ref, alg)
	if err == nil {
		k.mu.Lock()
		k.generated = append(k.generated, ref)
		k.mu.Unlock()
	}
	return s, err
}

func (k *keyLog) Signer(ctx context.Context, ref string) (crypto.Signer, error) {
	k.mu.Lock()
	k.signerCalls++
	k.mu.Unlock()
	return k.Custody.Signer(ctx, ref)
}

func (k *keyLog) Destroy(ctx context.Context, ref string) error {
	err := k.Custody.Destroy(ctx, ref)
	if err == nil {
		k.mu.Lock()
		k.destroyed = append(k.destroyed, ref)
		k.mu.Unlock()
	}
	return err
}
