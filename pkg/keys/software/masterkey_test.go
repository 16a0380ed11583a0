package software

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// openStore opens the real SQLite store in dir.
func openStore(t testing.TB, dir string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "clusterkeys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// emptyStore is a real SQLite store holding no blob.
func emptyStore(t testing.TB) *sqlite.DB {
	t.Helper()
	return openStore(t, t.TempDir())
}

func TestAMissingMasterKeyIsNotRecreatedOverSealedKeys(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		fill    func(t *testing.T, c *Custody, db *sqlite.DB)
		wantErr bool
	}{
		{"an empty store gets a new master key", func(*testing.T, *Custody, *sqlite.DB) {}, false},
		{"a store of Barbican mappings only gets a new master key", func(t *testing.T, _ *Custody, db *sqlite.DB) {
			if err := db.PutBlob(ctx, "barbican/ca/c/1/aa", []byte("https://barbican/v1/secrets/x")); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"a store holding a sealed CA key is refused", func(t *testing.T, c *Custody, _ *sqlite.DB) {
			if _, err := c.GenerateSigner(ctx, "ca/c/1/aa", keys.ECDSAP256); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"a store holding a sealed KEK is refused", func(t *testing.T, c *Custody, _ *sqlite.DB) {
			if err := c.GenerateKEK(ctx, "kek/k/v1/aa"); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			db := openStore(t, dir)
			path := filepath.Join(dir, "master.key")
			mk, err := LoadOrCreateMasterKey(ctx, path, db)
			if err != nil {
				t.Fatal(err)
			}
			c, err := New(mk, db)
			if err != nil {
				t.Fatal(err)
			}
			tt.fill(t, c, db)
			if err := os.Remove(path); err != nil { // lost, or a wrong --state-dir
				t.Fatal(err)
			}
			_, err = LoadOrCreateMasterKey(ctx, path, db)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("LoadOrCreateMasterKey = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr {
				return
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "1 keys sealed") {
				t.Fatalf("error %q does not name the file and what it would lose", err)
			}
			if _, serr := os.Stat(path); !os.IsNotExist(serr) {
				t.Fatal("a new master key file was written anyway")
			}
		})
	}
}

func TestListKeys(t *testing.T) {
	ctx := context.Background()
	db := emptyStore(t)
	c, err := New(randomKey(t), db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenerateSigner(ctx, "ca/c/1/aa", keys.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	if err := c.GenerateKEK(ctx, "kek/k/v1/bb"); err != nil {
		t.Fatal(err)
	}
	if err := db.PutBlob(ctx, "barbican/ca/c/2/cc", []byte("href")); err != nil {
		t.Fatal(err)
	}
	listed, err := c.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, l := range listed {
		if time.Since(l.Created) > time.Minute || l.Created.After(time.Now()) {
			t.Errorf("%s created at %v", l.Ref, l.Created)
		}
		refs = append(refs, l.Ref)
	}
	if want := []string{"ca/c/1/aa", "kek/k/v1/bb"}; !slices.Equal(refs, want) {
		t.Fatalf("ListKeys = %v, want %v (no Barbican mapping)", refs, want)
	}
	if err := c.Destroy(ctx, "ca/c/1/aa"); err != nil {
		t.Fatal(err)
	}
	if listed, _ := c.ListKeys(ctx); len(listed) != 1 {
		t.Fatalf("after Destroy: %v", listed)
	}
	if _, err := (&Custody{master: c.master, blobs: newMemBlobs()}).ListKeys(ctx); err == nil {
		t.Fatal("a blob store that cannot list was listed")
	}
}
