package keywrap_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// openSQLite opens the real metadata store in t.TempDir().
func openSQLite(t testing.TB, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Two processes (the gateway and the KMS shim) share one state directory:
// each has its own store handle, custody and Service.
func TestOnTheSQLiteStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "clusterkeys.db")
	mk, err := software.LoadOrCreateMasterKey(ctx, filepath.Join(filepath.Dir(path), "master.key"), openSQLite(t, path))
	if err != nil {
		t.Fatal(err)
	}
	newInstance := func() *keywrap.Service {
		db := openSQLite(t, path)
		c, err := software.New(mk, db)
		if err != nil {
			t.Fatal(err)
		}
		return keywrap.New(db, c, keywrap.Options{ActiveTTL: -1})
	}
	gateway, shim := newInstance(), newInstance()

	t.Run("instances racing to create one key agree on it", func(t *testing.T) {
		var wg sync.WaitGroup
		ids := make([]string, 4)
		for i := range ids {
			s := gateway
			if i%2 == 1 {
				s = shim
			}
			wg.Go(func() {
				_, v, _, err := s.Create(ctx, "etcd", "kube-system")
				if err != nil {
					t.Error(err)
				}
				ids[i] = v.KeyID
			})
		}
		wg.Wait()
		for _, id := range ids {
			if id != ids[0] || id == "" {
				t.Fatalf("key ids differ: %v", ids)
			}
		}
	})
	seed := []byte("0123456789abcdef0123456789abcdef")
	ct, v1, err := shim.Wrap(ctx, "etcd", seed, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a rotation through the gateway is used by the shim, old ciphertexts still unwrap", func(t *testing.T) {
		v2, err := gateway.Rotate(ctx, "etcd", v1.Version)
		if err != nil {
			t.Fatal(err)
		}
		_, used, err := shim.Wrap(ctx, "etcd", seed, nil)
		if err != nil || used.KeyID != v2.KeyID {
			t.Fatalf("shim wrapped with %+v, %v; want %s", used, err, v2.KeyID)
		}
		pt, v, err := shim.Unwrap(ctx, "etcd", ct, []byte("a"))
		if err != nil || !bytes.Equal(pt, seed) || v.KeyID != v1.KeyID {
			t.Fatalf("Unwrap = %v, %v", v, err)
		}
		if got, err := openSQLite(t, path).KEKVersionByKeyID(ctx, v1.KeyID); err != nil || got.Version != 1 {
			t.Fatalf("KEKVersionByKeyID = %+v, %v", got, err)
		}
	})
	t.Run("a stale rotation is a generation mismatch", func(t *testing.T) {
		_, err := shim.Rotate(ctx, "etcd", v1.Version)
		if !errors.Is(err, api.ErrGenerationMismatch) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a tampered ciphertext is decrypt_failed", func(t *testing.T) {
		bad := bytes.Clone(ct)
		bad[len(bad)-1] ^= 1
		_, _, err := gateway.Unwrap(ctx, "etcd", bad, []byte("a"))
		wantCode(t, err, http.StatusBadRequest, keywrap.CodeDecryptFailed)
	})
	t.Run("the key has both versions, the second active", func(t *testing.T) {
		k, vs, err := gateway.Key(ctx, "etcd")
		if err != nil || k.ActiveVersion != 2 || len(vs) != 2 {
			t.Fatalf("Key = %+v %+v, %v", k, vs, err)
		}
	})
}

// lossyStore is the real SQLite store whose next KEK write commits and then
// reports errAfter, as a store whose connection drops after the commit.
type lossyStore struct {
	*sqlite.DB
	errAfter error
}

func (s *lossyStore) after(err error) error {
	if err == nil && s.errAfter != nil {
		err, s.errAfter = s.errAfter, nil
	}
	return err
}

func (s *lossyStore) CreateKEK(ctx context.Context, k store.KEK, first store.KEKVersion) error {
	return s.after(s.DB.CreateKEK(ctx, k, first))
}

func (s *lossyStore) RotateKEK(ctx context.Context, name string, expected int, next store.KEKVersion) error {
	return s.after(s.DB.RotateKEK(ctx, name, expected, next))
}

func TestAKEKWhoseStoreOutcomeIsUnknownIsKept(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		err  error
	}{
		{"a dropped connection", fmt.Errorf("connection reset: %w", api.ErrUnavailable)},
		{"a cancelled request", fmt.Errorf("commit: %w", context.Canceled)},
		{"an error of no known kind", errors.New("driver: bad connection")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			st := &lossyStore{DB: f.st}
			svc := keywrap.New(st, f.keys, keywrap.Options{ActiveTTL: -1})

			st.errAfter = tt.err
			if _, _, _, err := svc.Create(ctx, "etcd", "p1"); err == nil {
				t.Fatal("Create reported no error")
			}
			// The KEK committed: it must wrap, so its key must be there.
			ct, v, err := svc.Wrap(ctx, "etcd", []byte("seed"), nil)
			if err != nil || v.Version != 1 {
				t.Fatalf("Wrap after a create of unknown outcome = v%d, %v", v.Version, err)
			}
			st.errAfter = tt.err
			if _, err := svc.Rotate(ctx, "etcd", 1); err == nil {
				t.Fatal("Rotate reported no error")
			}
			if _, v, err := svc.Wrap(ctx, "etcd", []byte("seed"), nil); err != nil || v.Version != 2 {
				t.Fatalf("Wrap after a rotate of unknown outcome = v%d, %v", v.Version, err)
			}
			if pt, _, err := svc.Unwrap(ctx, "etcd", ct, nil); err != nil || string(pt) != "seed" {
				t.Fatalf("Unwrap = %q, %v", pt, err)
			}
			// A rotation refused for sure destroys its key.
			if _, err := svc.Rotate(ctx, "etcd", 1); !errors.Is(err, api.ErrGenerationMismatch) {
				t.Fatalf("stale Rotate = %v", err)
			}
			if n := f.keyCount(t); n != 2 {
				t.Fatalf("custody holds %d keys, want versions 1 and 2 only", n)
			}
		})
	}
}
