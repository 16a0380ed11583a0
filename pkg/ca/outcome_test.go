package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/ca"
	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// lossyStore is the real SQLite store whose writes may lose their answer:
// after (or instead of) doing the write it returns errAfter, as a store
// whose connection drops around the commit does; failReads makes the next
// reads of the generations fail too.
type lossyStore struct {
	*sqlite.DB
	commit    bool  // do the write before failing
	errAfter  error // returned by the next CreateCluster or Rekey
	failReads atomic.Int32
}

func (s *lossyStore) fail(err error) error {
	e := s.errAfter
	s.errAfter = nil
	if e == nil {
		return err
	}
	if !s.commit {
		return e
	}
	if err != nil {
		return err
	}
	return e
}

func (s *lossyStore) CreateCluster(ctx context.Context, c store.Cluster, first store.CAGeneration) error {
	if s.errAfter != nil && !s.commit {
		return s.fail(nil)
	}
	return s.fail(s.DB.CreateCluster(ctx, c, first))
}

func (s *lossyStore) Rekey(ctx context.Context, cluster string, expected int, next store.CAGeneration, now, until time.Time) error {
	if s.errAfter != nil && !s.commit {
		return s.fail(nil)
	}
	return s.fail(s.DB.Rekey(ctx, cluster, expected, next, now, until))
}

func (s *lossyStore) Generations(ctx context.Context, cluster string) ([]store.CAGeneration, error) {
	if s.failReads.Add(-1) >= 0 {
		return nil, fmt.Errorf("read generations: %w", api.ErrUnavailable)
	}
	return s.DB.Generations(ctx, cluster)
}

type realFixture struct {
	st      *lossyStore
	custody *software.Custody
	a       *ca.Authority
}

func newRealFixture(t *testing.T) *realFixture {
	t.Helper()
	dir := t.TempDir()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "clusterkeys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	mk, err := software.LoadOrCreateMasterKey(context.Background(), filepath.Join(dir, "master.key"), db)
	if err != nil {
		t.Fatal(err)
	}
	custody, err := software.New(mk, db)
	if err != nil {
		t.Fatal(err)
	}
	st := &lossyStore{DB: db}
	return &realFixture{st: st, custody: custody, a: ca.New(st, custody, ca.Options{Logger: slog.New(slog.DiscardHandler)})}
}

// blobs returns the refs of the key blobs software custody holds.
func (f *realFixture) blobs(t *testing.T) []string {
	t.Helper()
	bs, err := f.st.ListBlobs(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, b := range bs {
		refs = append(refs, b.Ref)
	}
	return refs
}

// activeRef returns the key ref of cluster's active generation.
func (f *realFixture) activeRef(t *testing.T, cluster string) string {
	t.Helper()
	refs, err := f.st.KeyRefs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs.Live {
		if len(r) > 4 && r[3:3+len(cluster)+1] == cluster+"/" {
			return r
		}
	}
	t.Fatalf("cluster %s has no active key", cluster)
	return ""
}

var alice = auth.Principal{User: "alice", Project: "p1", Roles: []string{auth.RoleMember}}

func asAlice() context.Context { return auth.WithPrincipal(context.Background(), alice) }

// signs checks that cluster's active CA can sign, i.e. its key is in custody.
func (f *realFixture) signs(t *testing.T, cluster string) {
	t.Helper()
	if _, err := f.a.Sign(asAlice(), cluster, ca.SignRequest{CSR: aliceCSR(t), Profile: "client"}); err != nil {
		t.Fatalf("the active CA of %s cannot sign: %v", cluster, err)
	}
}

func TestUnknownStoreOutcomesKeepTheNewCAKey(t *testing.T) {
	unknown := fmt.Errorf("connection reset: %w", api.ErrUnavailable)
	cancelled := fmt.Errorf("commit: %w", context.Canceled)
	tests := []struct {
		name      string
		commit    bool
		err       error
		failReads int32
		wantErr   bool
		wantKept  bool // the new key is still in custody
	}{
		{name: "committed, then the answer was lost, and the read-back sees it", commit: true, err: unknown, wantKept: true},
		{name: "committed, then the answer was lost, and the read-back fails too", commit: true, err: unknown, failReads: 1, wantErr: true, wantKept: true},
		{name: "committed, then the request was cancelled", commit: true, err: cancelled, failReads: 1, wantErr: true, wantKept: true},
		{name: "not committed, outcome unknown", commit: false, err: unknown, wantErr: true, wantKept: true},
		{name: "refused for sure (lost compare-and-swap)", commit: false, err: fmt.Errorf("cas: %w", api.ErrGenerationMismatch), wantErr: true},
	}
	for _, tt := range tests {
		t.Run("rekey "+tt.name, func(t *testing.T) {
			f := newRealFixture(t)
			if _, _, err := f.a.CreateCA(asAlice(), "c1", ca.CreateRequest{}); err != nil {
				t.Fatal(err)
			}
			before := f.blobs(t)
			f.st.commit, f.st.errAfter = tt.commit, tt.err
			f.st.failReads.Store(tt.failReads)
			_, err := f.a.Rekey(asAlice(), "c1", ca.RekeyRequest{})
			if (err != nil) != tt.wantErr {
				t.Fatalf("Rekey = %v, want error %v", err, tt.wantErr)
			}
			after := f.blobs(t)
			var added []string
			for _, r := range after {
				if !slices.Contains(before, r) {
					added = append(added, r)
				}
			}
			if kept := len(added) == 1; kept != tt.wantKept {
				t.Fatalf("custody before %v, after %v: new key kept %v, want %v", before, after, kept, tt.wantKept)
			}
			if tt.commit {
				// The store moved to the new generation: its key must sign.
				f.signs(t, "c1")
			}
		})
	}
	for _, tt := range tests[:4] {
		t.Run("create "+tt.name, func(t *testing.T) {
			f := newRealFixture(t)
			f.st.commit, f.st.errAfter = tt.commit, tt.err
			f.st.failReads.Store(tt.failReads)
			_, _, err := f.a.CreateCA(asAlice(), "c1", ca.CreateRequest{})
			if (err != nil) != tt.wantErr {
				t.Fatalf("CreateCA = %v, want error %v", err, tt.wantErr)
			}
			if got := len(f.blobs(t)); got != 1 {
				t.Fatalf("custody holds %d keys, want the new one kept", got)
			}
			if tt.commit {
				f.signs(t, "c1")
			}
		})
	}
	t.Run("create that loses to a concurrent create destroys its key", func(t *testing.T) {
		f := newRealFixture(t)
		if _, _, err := f.a.CreateCA(asAlice(), "c1", ca.CreateRequest{}); err != nil {
			t.Fatal(err)
		}
		active := f.activeRef(t, "c1")
		// Make the next create skip its existence check by failing the
		// first read: it generates a key, then meets the conflict.
		g := &conflictingStore{lossyStore: f.st}
		a := ca.New(g, f.custody, ca.Options{Logger: slog.New(slog.DiscardHandler)})
		_, created, err := a.CreateCA(asAlice(), "c1", ca.CreateRequest{})
		if err != nil || created {
			t.Fatalf("CreateCA = created %v, %v; want the existing CA", created, err)
		}
		if got := f.blobs(t); len(got) != 1 || got[0] != active {
			t.Fatalf("custody holds %v, want only %s", got, active)
		}
	})
}

// conflictingStore answers the first Cluster read with "not found", as if
// another instance created the cluster just after it.
type conflictingStore struct {
	*lossyStore
	read atomic.Bool
}

func (s *conflictingStore) Cluster(ctx context.Context, name string) (store.Cluster, error) {
	if !s.read.Swap(true) {
		return store.Cluster{}, fmt.Errorf("cluster %q: %w", name, api.ErrNotFound)
	}
	return s.lossyStore.Cluster(ctx, name)
}

// aliceCSR is a client CSR whose CN is alice's user name.
func aliceCSR(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: alice.User}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}
