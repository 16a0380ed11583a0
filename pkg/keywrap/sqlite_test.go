package keywrap_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// openSQLite opens the real metadata store in t.TempDir().
func openSQLite(t *testing.T, path string) *sqlite.DB {
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
	mk, err := software.LoadOrCreateMasterKey(filepath.Join(filepath.Dir(path), "master.key"))
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
