package keywrap_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/fakeclock"
	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// flakyCustody is custody that can be made unavailable.
type flakyCustody struct {
	keywrap.Custody
	down atomic.Bool
}

func (f *flakyCustody) Seal(ctx context.Context, ref string, pt, aad []byte) ([]byte, error) {
	if f.down.Load() {
		return nil, fmt.Errorf("token gone: %w", api.ErrUnavailable)
	}
	return f.Custody.Seal(ctx, ref, pt, aad)
}

func (f *flakyCustody) Open(ctx context.Context, ref string, ct, aad []byte) ([]byte, error) {
	if f.down.Load() {
		return nil, fmt.Errorf("token gone: %w", api.ErrUnavailable)
	}
	return f.Custody.Open(ctx, ref, ct, aad)
}

// fixture is a Service on the real SQLite store, in t.TempDir(), and
// software custody under a random master key, on a fake clock.
type fixture struct {
	st      *sqlite.DB
	keys    *software.Custody
	custody *flakyCustody // keys, as the Service sees them
	clock   *fakeclock.Clock
	svc     *keywrap.Service
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	st := openSQLite(t, filepath.Join(t.TempDir(), "clusterkeys.db"))
	mk := make([]byte, software.MasterKeySize)
	if _, err := rand.Read(mk); err != nil {
		t.Fatal(err)
	}
	c, err := software.New(mk, st)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, keys: c, custody: &flakyCustody{Custody: c}, clock: fakeclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))}
	f.svc = f.service()
	return f
}

// service returns another Service over the same store and custody, as a
// second instance (or the KMS shim next to the gateway) would be.
func (f *fixture) service() *keywrap.Service { return f.serviceOn(f.st) }

// serviceOn returns another Service over st (the fixture's store, wrapped)
// and the same custody.
func (f *fixture) serviceOn(st keywrap.Store) *keywrap.Service {
	return keywrap.New(st, f.custody, keywrap.Options{Now: f.clock.Now, Registerer: metrics.NewRegistry()})
}

// keyCount returns the number of keys custody holds.
func (f *fixture) keyCount(t testing.TB) int {
	t.Helper()
	listed, err := f.keys.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(listed)
}

func (f *fixture) create(t testing.TB, name string) {
	t.Helper()
	if _, _, _, err := f.svc.Create(context.Background(), name, "p1"); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) wrap(t testing.TB, name string, pt, aad []byte) []byte {
	t.Helper()
	ct, _, err := f.svc.Wrap(context.Background(), name, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

// wantCode fails unless err is an API error with that status and code.
func wantCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %d %s", status, code)
	}
	e := api.ErrorFor(err)
	if e.Status != status || e.Code != code {
		t.Fatalf("err = %v (%d %s), want %d %s", err, e.Status, e.Code, status, code)
	}
}

func TestCreate(t *testing.T) {
	ctx := context.Background()
	t.Run("a new key gets version 1 with a key id, and creating it again returns the same", func(t *testing.T) {
		f := newFixture(t)
		k, v, created, err := f.svc.Create(ctx, "etcd", "p1")
		if err != nil || !created {
			t.Fatalf("Create = %v, created %v", err, created)
		}
		if k.ActiveVersion != 1 || v.Version != 1 || len(v.KeyID) != 32 || v.KeyID != keywrap.KeyID("etcd", 1, v.KeyRef) {
			t.Fatalf("kek %+v version %+v", k, v)
		}
		k2, v2, created, err := f.svc.Create(ctx, "etcd", "p1")
		if err != nil || created || v2.KeyID != v.KeyID || k2.Project != "p1" {
			t.Fatalf("second Create = %+v %+v created %v, %v", k2, v2, created, err)
		}
		if n := f.keyCount(t); n != 1 {
			t.Fatalf("%d custody keys after two creates, want 1", n)
		}
	})
	t.Run("a name taken by another project conflicts", func(t *testing.T) {
		f := newFixture(t)
		f.create(t, "etcd")
		_, _, _, err := f.svc.Create(ctx, "etcd", "p2")
		wantCode(t, err, http.StatusConflict, api.CodeConflict)
		if !errors.Is(err, api.ErrConflict) {
			t.Fatal("error does not wrap api.ErrConflict")
		}
	})
	for _, name := range []string{"", "-x", "a/b", "a b", "ü", strings.Repeat("a", keywrap.MaxNameLength+1), "../etc"} {
		t.Run(fmt.Sprintf("the name %q is refused", name), func(t *testing.T) {
			f := newFixture(t)
			_, _, _, err := f.svc.Create(ctx, name, "p1")
			wantCode(t, err, http.StatusBadRequest, keywrap.CodeInvalidKeyName)
		})
	}
	t.Run("a store failure of unknown outcome keeps the new key for the reconciler", func(t *testing.T) {
		f := newFixture(t)
		st := refusingCreate{DB: f.st, err: fmt.Errorf("disk full: %w", api.ErrUnavailable)}
		_, _, _, err := f.serviceOn(st).Create(ctx, "etcd", "p1")
		if !errors.Is(err, api.ErrUnavailable) {
			t.Fatalf("err = %v", err)
		}
		if n := f.keyCount(t); n != 1 {
			t.Fatalf("%d custody keys, want the new one kept", n)
		}
	})
	t.Run("instances racing to create one key agree on it and leave no orphan", func(t *testing.T) {
		f := newFixture(t)
		const n = 8
		ids := make([]string, n)
		var createdCount atomic.Int32
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, v, created, err := f.service().Create(ctx, "etcd", "p1")
				if err != nil {
					t.Error(err)
				}
				if created {
					createdCount.Add(1)
				}
				ids[i] = v.KeyID
			})
		}
		wg.Wait()
		if createdCount.Load() != 1 {
			t.Fatalf("%d instances say they created the key, want 1", createdCount.Load())
		}
		for _, id := range ids {
			if id != ids[0] {
				t.Fatalf("key ids differ: %v", ids)
			}
		}
		if c := f.keyCount(t); c != 1 {
			t.Fatalf("%d custody keys, want 1", c)
		}
	})
}

// refusingCreate is the real store whose CreateKEK fails with err and
// writes nothing.
type refusingCreate struct {
	*sqlite.DB
	err error
}

func (s refusingCreate) CreateKEK(context.Context, store.KEK, store.KEKVersion) error { return s.err }

func TestWrapUnwrap(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.create(t, "etcd")
	f.create(t, "other")
	seed := []byte("0123456789abcdef0123456789abcdef")
	aad := []byte("uid-1234")
	ct, v, err := f.svc.Wrap(ctx, "etcd", seed, aad)
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != 1 || ct[0] != 1 || len(ct) != keywrap.HeaderSize+12+len(seed)+16 {
		t.Fatalf("version %d, ciphertext of %d bytes", v.Version, len(ct))
	}
	if got, err := keywrap.ParseHeader(ct); err != nil || got != 1 {
		t.Fatalf("ParseHeader = %d, %v", got, err)
	}
	t.Run("the ciphertext unwraps with the same aad", func(t *testing.T) {
		pt, v, err := f.svc.Unwrap(ctx, "etcd", ct, aad)
		if err != nil || !bytes.Equal(pt, seed) || v.Version != 1 {
			t.Fatalf("Unwrap = %q v%d, %v", pt, v.Version, err)
		}
	})
	t.Run("an empty aad round-trips", func(t *testing.T) {
		c := f.wrap(t, "etcd", seed, nil)
		pt, _, err := f.svc.Unwrap(ctx, "etcd", c, nil)
		if err != nil || !bytes.Equal(pt, seed) {
			t.Fatalf("Unwrap = %q, %v", pt, err)
		}
	})

	withVersion := func(v uint32) []byte {
		c := bytes.Clone(ct)
		c[1], c[2], c[3], c[4] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
		return c
	}
	bad := []struct {
		name   string
		key    string
		ct     []byte
		aad    []byte
		status int
		code   string
	}{
		{"another aad fails as decrypt_failed", "etcd", ct, []byte("uid-1235"), 400, keywrap.CodeDecryptFailed},
		{"no aad fails as decrypt_failed", "etcd", ct, nil, 400, keywrap.CodeDecryptFailed},
		{"another key's name fails as decrypt_failed", "other", ct, aad, 400, keywrap.CodeDecryptFailed},
		{"an unknown format byte fails as decrypt_failed", "etcd", append([]byte{2}, ct[1:]...), aad, 400, keywrap.CodeDecryptFailed},
		{"a truncated header fails as decrypt_failed", "etcd", ct[:3], aad, 400, keywrap.CodeDecryptFailed},
		{"an empty ciphertext fails as decrypt_failed", "etcd", nil, aad, 400, keywrap.CodeDecryptFailed},
		{"a header with no body fails as decrypt_failed", "etcd", ct[:keywrap.HeaderSize], aad, 400, keywrap.CodeDecryptFailed},
		{"version 0 fails as decrypt_failed", "etcd", withVersion(0), aad, 400, keywrap.CodeDecryptFailed},
		{"a version that does not exist is unknown_key_version", "etcd", withVersion(7), aad, 400, keywrap.CodeUnknownKeyVersion},
		{"a missing key is 404", "nope", ct, aad, 404, api.CodeNotFound},
		{"an oversize aad is refused", "etcd", ct, make([]byte, keywrap.MaxAAD+1), 400, keywrap.CodeAADTooLarge},
	}
	for i := keywrap.HeaderSize; i < len(ct); i++ {
		c := bytes.Clone(ct)
		c[i] ^= 0x01
		bad = append(bad, struct {
			name   string
			key    string
			ct     []byte
			aad    []byte
			status int
			code   string
		}{fmt.Sprintf("a flipped bit in byte %d fails as decrypt_failed", i), "etcd", c, aad, 400, keywrap.CodeDecryptFailed})
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			pt, _, err := f.svc.Unwrap(ctx, tt.key, tt.ct, tt.aad)
			wantCode(t, err, tt.status, tt.code)
			if pt != nil {
				t.Fatal("plaintext returned with an error")
			}
			if tt.code == keywrap.CodeDecryptFailed && !errors.Is(err, keywrap.ErrDecrypt) {
				t.Fatal("decrypt_failed does not wrap ErrDecrypt")
			}
			if strings.Contains(err.Error(), string(seed)) || strings.Contains(api.ErrorFor(err).Detail, string(seed)) {
				t.Fatal("error text contains the plaintext")
			}
		})
	}
	t.Run("a plaintext over 64 KiB is refused as plaintext_too_large", func(t *testing.T) {
		_, _, err := f.svc.Wrap(ctx, "etcd", make([]byte, keywrap.DefaultMaxPlaintext+1), nil)
		wantCode(t, err, http.StatusRequestEntityTooLarge, keywrap.CodePlaintextTooLarge)
	})
	t.Run("a plaintext of exactly 64 KiB round-trips", func(t *testing.T) {
		big := make([]byte, keywrap.DefaultMaxPlaintext)
		c := f.wrap(t, "etcd", big, nil)
		if _, _, err := f.svc.Unwrap(ctx, "etcd", c, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("wrapping with a missing key is 404", func(t *testing.T) {
		_, _, err := f.svc.Wrap(ctx, "nope", seed, nil)
		wantCode(t, err, http.StatusNotFound, api.CodeNotFound)
	})
	t.Run("custody being down is 503, not a client error", func(t *testing.T) {
		f.custody.down.Store(true)
		t.Cleanup(func() { f.custody.down.Store(false) })
		_, _, err := f.svc.Wrap(ctx, "etcd", seed, nil)
		wantCode(t, err, http.StatusServiceUnavailable, api.CodeBackendUnavailable)
		_, _, err = f.svc.Unwrap(ctx, "etcd", ct, aad)
		wantCode(t, err, http.StatusServiceUnavailable, api.CodeBackendUnavailable)
	})
}

func TestRotate(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.create(t, "etcd")
	v1, err := f.svc.Active(ctx, "etcd")
	if err != nil {
		t.Fatal(err)
	}
	old := f.wrap(t, "etcd", []byte("old seed"), []byte("a"))
	v2, err := f.svc.Rotate(ctx, "etcd", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("rotation makes a new version with a new key id", func(t *testing.T) {
		if v2.Version != 2 || v2.KeyID == v1.KeyID || v2.KeyRef == v1.KeyRef {
			t.Fatalf("v1 %+v, v2 %+v", v1, v2)
		}
		if a, _ := f.svc.Active(ctx, "etcd"); a.KeyID != v2.KeyID {
			t.Fatalf("Active = %+v after rotation through the same service", a)
		}
	})
	t.Run("new wraps use the new version", func(t *testing.T) {
		_, v, err := f.svc.Wrap(ctx, "etcd", []byte("x"), nil)
		if err != nil || v.Version != 2 {
			t.Fatalf("Wrap used version %d, %v", v.Version, err)
		}
	})
	t.Run("ciphertexts of the old version still unwrap", func(t *testing.T) {
		pt, v, err := f.svc.Unwrap(ctx, "etcd", old, []byte("a"))
		if err != nil || string(pt) != "old seed" || v.Version != 1 {
			t.Fatalf("Unwrap = %q v%d, %v", pt, v.Version, err)
		}
	})
	t.Run("a stale expected version is a generation mismatch and creates nothing", func(t *testing.T) {
		before := f.keyCount(t)
		_, err := f.svc.Rotate(ctx, "etcd", 1)
		if !errors.Is(err, api.ErrGenerationMismatch) {
			t.Fatalf("err = %v", err)
		}
		wantCode(t, err, http.StatusConflict, api.CodeGenerationMismatch)
		if f.keyCount(t) != before {
			t.Fatal("a custody key was left behind")
		}
	})
	t.Run("expected 0 rotates whatever is active", func(t *testing.T) {
		v, err := f.svc.Rotate(ctx, "etcd", 0)
		if err != nil || v.Version != 3 {
			t.Fatalf("Rotate = %+v, %v", v, err)
		}
	})
	t.Run("rotating a missing key is 404", func(t *testing.T) {
		_, err := f.svc.Rotate(ctx, "nope", 0)
		wantCode(t, err, http.StatusNotFound, api.CodeNotFound)
	})
}

func TestActiveIsCachedBriefly(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.create(t, "etcd")
	st := &countingReads{DB: f.st}
	shim := f.serviceOn(st) // another process, e.g. the KMS shim
	v1, err := shim.Active(ctx, "etcd")
	if err != nil {
		t.Fatal(err)
	}
	reads := st.reads.Load()
	for range 10 {
		if _, _, err := shim.Wrap(ctx, "etcd", []byte("seed"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := st.reads.Load(); got != reads {
		t.Fatalf("10 wraps within the TTL read the KEK %d times, want 0", got-reads)
	}
	if _, err := f.svc.Rotate(ctx, "etcd", 1); err != nil {
		t.Fatal(err)
	}
	if v, _ := shim.Active(ctx, "etcd"); v.Version != v1.Version {
		t.Fatalf("within the TTL the shim sees version %d, want the cached %d", v.Version, v1.Version)
	}
	f.clock.Advance(keywrap.DefaultActiveTTL)
	if v, _ := shim.Active(ctx, "etcd"); v.Version != 2 {
		t.Fatalf("after the TTL the shim sees version %d, want 2", v.Version)
	}
}

// countingReads is the real store counting its reads of KEKs and their
// versions.
type countingReads struct {
	*sqlite.DB
	reads atomic.Int32
}

func (s *countingReads) KEK(ctx context.Context, name string) (store.KEK, error) {
	s.reads.Add(1)
	return s.DB.KEK(ctx, name)
}

func (s *countingReads) KEKVersions(ctx context.Context, name string) ([]store.KEKVersion, error) {
	s.reads.Add(1)
	return s.DB.KEKVersions(ctx, name)
}

func (s *countingReads) KEKVersion(ctx context.Context, name string, version int) (store.KEKVersion, error) {
	s.reads.Add(1)
	return s.DB.KEKVersion(ctx, name, version)
}

func FuzzUnwrap(f *testing.F) {
	fx := newFixture(f)
	fx.create(f, "etcd")
	ct := fx.wrap(f, "etcd", []byte("seed"), []byte("aad"))
	f.Add(ct, []byte("aad"))
	f.Add([]byte{1, 0, 0, 0, 1}, []byte{})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0}, []byte{})
	f.Fuzz(func(t *testing.T, ciphertext, aad []byte) {
		pt, _, err := fx.svc.Unwrap(context.Background(), "etcd", ciphertext, aad)
		if err == nil {
			if string(pt) != "seed" {
				t.Fatalf("forged plaintext %q", pt)
			}
			return
		}
		if e := api.ErrorFor(err); e.Status != http.StatusBadRequest {
			t.Fatalf("Unwrap of client input gave %d %s: %v", e.Status, e.Code, err)
		}
	})
}

func BenchmarkWrapUnwrap32(b *testing.B) {
	f := newFixture(b)
	f.create(b, "etcd")
	ctx := context.Background()
	seed := make([]byte, 32)
	for b.Loop() {
		ct, _, err := f.svc.Wrap(ctx, "etcd", seed, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := f.svc.Unwrap(ctx, "etcd", ct, nil); err != nil {
			b.Fatal(err)
		}
	}
}
