package storetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

func testKEKRoundTrip(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	if err := d.CreateKEK(ctx, KEK("etcd"), KEKVersion("etcd", 1)); err != nil {
		t.Fatal(err)
	}
	if err := d.RotateKEK(ctx, "etcd", 1, KEKVersion("etcd", 2)); err != nil {
		t.Fatal(err)
	}

	k, err := d.KEK(ctx, "etcd")
	if err != nil {
		t.Fatal(err)
	}
	want := KEK("etcd")
	want.ActiveVersion, want.CreatedAt = 2, utc(want.CreatedAt)
	if !reflect.DeepEqual(k, want) {
		t.Fatalf("KEK = %+v, want %+v", k, want)
	}

	v1, v2 := KEKVersion("etcd", 1), KEKVersion("etcd", 2)
	v1.CreatedAt, v2.CreatedAt = utc(v1.CreatedAt), utc(v2.CreatedAt)
	vs, err := d.KEKVersions(ctx, "etcd")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(vs, []store.KEKVersion{v2, v1}) {
		t.Fatalf("KEKVersions = %+v, want newest first", vs)
	}
	if got, err := d.KEKVersion(ctx, "etcd", 1); err != nil || !reflect.DeepEqual(got, v1) {
		t.Fatalf("KEKVersion(1) = %+v, %v", got, err)
	}
	if got, err := d.KEKVersionByKeyID(ctx, v2.KeyID); err != nil || !reflect.DeepEqual(got, v2) {
		t.Fatalf("KEKVersionByKeyID = %+v, %v", got, err)
	}
}

func testKEKErrors(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	if err := d.CreateKEK(ctx, KEK("a"), KEKVersion("a", 1)); err != nil {
		t.Fatal(err)
	}
	sameID := KEKVersion("b", 1)
	sameID.KeyID = KEKVersion("a", 1).KeyID
	sameRef := KEKVersion("a", 2)
	sameRef.KeyRef = KEKVersion("a", 1).KeyRef

	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"creating an existing KEK is a conflict", func() error {
			v := KEKVersion("a", 1)
			v.KeyRef, v.KeyID = "other-ref", "other-id"
			return d.CreateKEK(ctx, KEK("a"), v)
		}, api.ErrConflict},
		{"a key id already used is a conflict", func() error { return d.CreateKEK(ctx, KEK("b"), sameID) }, api.ErrConflict},
		{"a missing KEK is not found", func() error { _, err := d.KEK(ctx, "nope"); return err }, api.ErrNotFound},
		{"a missing version is not found", func() error { _, err := d.KEKVersion(ctx, "a", 9); return err }, api.ErrNotFound},
		{"an unknown key id is not found", func() error { _, err := d.KEKVersionByKeyID(ctx, "ck1:nope"); return err }, api.ErrNotFound},
		{"rotating a missing KEK is not found", func() error { return d.RotateKEK(ctx, "nope", 1, KEKVersion("nope", 2)) }, api.ErrNotFound},
		{"rotating from a stale version is a mismatch", func() error { return d.RotateKEK(ctx, "a", 0, KEKVersion("a", 1)) }, api.ErrGenerationMismatch},
		{"rotating to a version that skips is a mismatch", func() error { return d.RotateKEK(ctx, "a", 1, KEKVersion("a", 3)) }, api.ErrGenerationMismatch},
		{"rotating to a key ref already used is a conflict", func() error { return d.RotateKEK(ctx, "a", 1, sameRef) }, api.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("failed calls changed nothing", func(t *testing.T) {
		k, err := d.KEK(ctx, "a")
		if err != nil || k.ActiveVersion != 1 {
			t.Fatalf("KEK = %+v, %v", k, err)
		}
		if _, err := d.KEK(ctx, "b"); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("KEK b = %v, want ErrNotFound", err)
		}
		if vs, _ := d.KEKVersions(ctx, "a"); len(vs) != 1 {
			t.Fatalf("%d versions, want 1", len(vs))
		}
	})
	t.Run("a missing KEK has no versions", func(t *testing.T) {
		vs, err := d.KEKVersions(ctx, "nope")
		if err != nil || len(vs) != 0 {
			t.Fatalf("KEKVersions = %v, %v", vs, err)
		}
	})
}

func testRotateKEKRace(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	first, another := newStore(t)
	dbs := []Store{first, another()}
	if err := dbs[0].CreateKEK(ctx, KEK("k"), KEKVersion("k", 1)); err != nil {
		t.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		wins   int
		others []error
		start  = make(chan struct{})
	)
	for i := range 16 {
		wg.Go(func() {
			v := KEKVersion("k", 2)
			v.KeyRef, v.KeyID = fmt.Sprintf("kek/k/2/%d", i), fmt.Sprintf("ck1:k:2:%d", i)
			<-start
			err := dbs[i%2].RotateKEK(ctx, "k", 1, v)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
			} else if !errors.Is(err, api.ErrGenerationMismatch) {
				others = append(others, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if wins != 1 || len(others) != 0 {
		t.Fatalf("%d wins, unexpected errors %v; want exactly one win and mismatches", wins, others)
	}
	vs, err := dbs[1].KEKVersions(ctx, "k")
	if err != nil || len(vs) != 2 || vs[0].Version != 2 {
		t.Fatalf("versions %+v, %v", vs, err)
	}
}

func testBlobs(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	blob := []byte("sealed\x00blob\xff")
	if err := d.PutBlob(ctx, "ca/c/1", blob); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"a stored blob comes back byte for byte", func(t *testing.T) {
			got, err := d.GetBlob(ctx, "ca/c/1")
			if err != nil || !bytes.Equal(got, blob) {
				t.Fatalf("GetBlob = %x, %v", got, err)
			}
		}},
		{"a ref is never overwritten", func(t *testing.T) {
			err := d.PutBlob(ctx, "ca/c/1", []byte("other"))
			if !errors.Is(err, api.ErrConflict) {
				t.Fatalf("err = %v, want ErrConflict", err)
			}
			if bytes.Contains([]byte(err.Error()), []byte("other")) {
				t.Fatalf("error %q shows the blob", err)
			}
			if got, _ := d.GetBlob(ctx, "ca/c/1"); !bytes.Equal(got, blob) {
				t.Fatal("the blob changed")
			}
		}},
		{"an empty blob is stored as empty", func(t *testing.T) {
			if err := d.PutBlob(ctx, "empty", nil); err != nil {
				t.Fatal(err)
			}
			got, err := d.GetBlob(ctx, "empty")
			if err != nil || len(got) != 0 {
				t.Fatalf("GetBlob = %x, %v", got, err)
			}
		}},
		{"a missing ref is not found", func(t *testing.T) {
			if _, err := d.GetBlob(ctx, "nope"); !errors.Is(err, api.ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
		}},
		{"a deleted blob is gone and deleting again is fine", func(t *testing.T) {
			if err := d.DeleteBlob(ctx, "ca/c/1"); err != nil {
				t.Fatal(err)
			}
			if _, err := d.GetBlob(ctx, "ca/c/1"); !errors.Is(err, api.ErrNotFound) {
				t.Fatalf("after delete: %v, want ErrNotFound", err)
			}
			if err := d.DeleteBlob(ctx, "ca/c/1"); err != nil {
				t.Fatalf("second delete: %v", err)
			}
		}},
		{"an empty ref is refused", func(t *testing.T) {
			if err := d.PutBlob(ctx, "", blob); err == nil {
				t.Fatal("PutBlob accepted an empty ref")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

// testSoftwareCustody checks that software custody keeps its sealed blobs
// in the store: a key generated through one handle is found through
// another (a second instance with the same master key), and is gone after
// Destroy.
func testSoftwareCustody(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	mk := make([]byte, software.MasterKeySize)
	if _, err := rand.Read(mk); err != nil {
		t.Fatal(err)
	}
	d, another := newStore(t)
	c, err := software.New(mk, d)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.GenerateSigner(ctx, "ca/c/1", keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenerateSigner(ctx, "ca/c/1", keys.ECDSAP256); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("reusing a ref: %v, want ErrConflict", err)
	}

	c2, err := software.New(mk, another())
	if err != nil {
		t.Fatal(err)
	}
	again, err := c2.Signer(ctx, "ca/c/1")
	if err != nil {
		t.Fatalf("Signer through another handle: %v", err)
	}
	digest := sha256.Sum256([]byte("message"))
	sig, err := again.Sign(rand.Reader, digest[:], nil)
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := s.Public().(*ecdsa.PublicKey); !ok || !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatal("the reloaded key is not the generated one")
	}
	if err := c2.Destroy(ctx, "ca/c/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Signer(ctx, "ca/c/1"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("Signer after Destroy: %v, want ErrNotFound", err)
	}
}
