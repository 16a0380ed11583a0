package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

func testKEK(name string) store.KEK {
	return store.KEK{Name: name, Project: "proj", ActiveVersion: 1, CreatedAt: t0}
}

func TestKEKRoundTrip(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	if err := d.CreateKEK(ctx, testKEK("etcd"), testKEKVersion("etcd", 1)); err != nil {
		t.Fatal(err)
	}
	if err := d.RotateKEK(ctx, "etcd", 1, testKEKVersion("etcd", 2)); err != nil {
		t.Fatal(err)
	}

	k, err := d.KEK(ctx, "etcd")
	if err != nil {
		t.Fatal(err)
	}
	want := testKEK("etcd")
	want.ActiveVersion, want.CreatedAt = 2, utc(want.CreatedAt)
	if !reflect.DeepEqual(k, want) {
		t.Fatalf("KEK = %+v, want %+v", k, want)
	}

	v1, v2 := testKEKVersion("etcd", 1), testKEKVersion("etcd", 2)
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

func TestKEKErrors(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	if err := d.CreateKEK(ctx, testKEK("a"), testKEKVersion("a", 1)); err != nil {
		t.Fatal(err)
	}
	sameID := testKEKVersion("b", 1)
	sameID.KeyID = testKEKVersion("a", 1).KeyID
	sameRef := testKEKVersion("a", 2)
	sameRef.KeyRef = testKEKVersion("a", 1).KeyRef

	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"creating an existing KEK is a conflict", func() error {
			v := testKEKVersion("a", 1)
			v.KeyRef, v.KeyID = "other-ref", "other-id"
			return d.CreateKEK(ctx, testKEK("a"), v)
		}, api.ErrConflict},
		{"a key id already used is a conflict", func() error { return d.CreateKEK(ctx, testKEK("b"), sameID) }, api.ErrConflict},
		{"a missing KEK is not found", func() error { _, err := d.KEK(ctx, "nope"); return err }, api.ErrNotFound},
		{"a missing version is not found", func() error { _, err := d.KEKVersion(ctx, "a", 9); return err }, api.ErrNotFound},
		{"an unknown key id is not found", func() error { _, err := d.KEKVersionByKeyID(ctx, "ck1:nope"); return err }, api.ErrNotFound},
		{"rotating a missing KEK is not found", func() error { return d.RotateKEK(ctx, "nope", 1, testKEKVersion("nope", 2)) }, api.ErrNotFound},
		{"rotating from a stale version is a mismatch", func() error { return d.RotateKEK(ctx, "a", 0, testKEKVersion("a", 1)) }, api.ErrGenerationMismatch},
		{"rotating to a version that skips is a mismatch", func() error { return d.RotateKEK(ctx, "a", 1, testKEKVersion("a", 3)) }, api.ErrGenerationMismatch},
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

func TestRotateKEKRace(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kek.db")
	dbs := []*DB{openAt(t, path), openAt(t, path)}
	if err := dbs[0].CreateKEK(ctx, testKEK("k"), testKEKVersion("k", 1)); err != nil {
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
			v := testKEKVersion("k", 2)
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

func TestBlobs(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
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

func TestTimesOutOfRangeAreRefused(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	g := testGeneration("far", 1)
	g.NotAfter = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := d.CreateCluster(ctx, testCluster("far"), g); err == nil {
		t.Fatal("CreateCluster stored year 10000")
	}
}
