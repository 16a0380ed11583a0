package software

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
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

func TestMasterKeyFromEnv(t *testing.T) {
	key := make([]byte, MasterKeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	short := base64.StdEncoding.EncodeToString(key[:16])
	bad := "!!" + base64.StdEncoding.EncodeToString(key)[2:]
	tests := []struct {
		name    string
		env     map[string]string
		wantOK  bool
		wantKey []byte
		wantErr string
	}{
		{"unset: no key and no error", nil, false, nil, ""},
		{"standard base64 gives the key", map[string]string{EnvMasterKey: base64.StdEncoding.EncodeToString(key)}, true, key, ""},
		{"unpadded base64 and a trailing newline are fine", map[string]string{EnvMasterKey: base64.RawStdEncoding.EncodeToString(key) + "\n"}, true, key, ""},
		{"a key of the wrong length is refused", map[string]string{EnvMasterKey: short}, true, nil, "16 bytes once decoded, want exactly 32"},
		{"text that is not base64 is refused", map[string]string{EnvMasterKey: bad}, true, nil, "not base64"},
		{"an empty value is refused", map[string]string{EnvMasterKey: ""}, true, nil, "0 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			got, ok, err := MasterKeyFromEnv(lookup)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if v := tt.env[EnvMasterKey]; len(v) > 4 && strings.Contains(err.Error(), strings.TrimSpace(v)[4:]) {
					t.Fatalf("the error shows the value: %v", err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.wantKey) {
				t.Fatalf("MasterKeyFromEnv = %x, %v", got, err)
			}
		})
	}
}
