package sqlite

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
)

// Software custody keeps its sealed blobs in this store: a key generated
// through it survives reopening the file and is gone after Destroy.
func TestSoftwareCustodyOnTheStore(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir() + "/custody.db"
	mk := make([]byte, 32)
	if _, err := rand.Read(mk); err != nil {
		t.Fatal(err)
	}

	d, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
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
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = openAt(t, path)
	c, err = software.New(mk, d)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Signer(ctx, "ca/c/1")
	if err != nil {
		t.Fatalf("Signer after reopen: %v", err)
	}
	digest := sha256.Sum256([]byte("message"))
	sig, err := again.Sign(rand.Reader, digest[:], nil)
	if err != nil {
		t.Fatal(err)
	}
	if !verifyECDSA(s.Public(), digest[:], sig) {
		t.Fatal("the reloaded key is not the generated one")
	}
	if err := c.Destroy(ctx, "ca/c/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Signer(ctx, "ca/c/1"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("Signer after Destroy: %v, want ErrNotFound", err)
	}
}
