package kmsplugin_test

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/kms/pkg/service"

	"github.com/clusterkeys/clusterkeys/internal/fakeclock"
	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/kmsplugin"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// node is one control-plane node's shim: its own store connection, custody
// and keywrap Service (with its caches), over the store and master key
// every node shares.
type node struct {
	kw      *keywrap.Service
	plugin  *kmsplugin.Plugin
	custody *software.Custody
}

const (
	refresh   = 5 * time.Second
	statusTTL = 5 * time.Second
)

// twoNodes returns two shims on one SQLite file and one software master
// key, both on KEK "kubernetes-kms", and the clock they read.
func twoNodes(t *testing.T) (a, b node, clk *fakeclock.Clock) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "clusterkeys.db")
	master := make([]byte, software.MasterKeySize)
	if _, err := rand.Read(master); err != nil {
		t.Fatal(err)
	}
	clk = fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	mk := func() node {
		db, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		c, err := software.New(master, db)
		if err != nil {
			t.Fatal(err)
		}
		kw := keywrap.New(db, c, keywrap.Options{ActiveTTL: refresh, Now: clk.Now})
		if _, _, err := kmsplugin.EnsureKey(ctx, kw, kmsplugin.DefaultKeyName, kmsplugin.DefaultKeyProject); err != nil {
			t.Fatal(err)
		}
		p, err := kmsplugin.New(kw, kmsplugin.Config{KeyName: kmsplugin.DefaultKeyName, StatusTTL: statusTTL, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return node{kw: kw, plugin: p, custody: c}
	}
	return mk(), mk(), clk
}

func statusKeyID(t *testing.T, p *kmsplugin.Plugin) string {
	t.Helper()
	r, err := p.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r.KeyID
}

func encrypt(t *testing.T, p *kmsplugin.Plugin) ([]byte, *service.EncryptResponse) {
	t.Helper()
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		t.Fatal(err)
	}
	r, err := p.Encrypt(context.Background(), "uid", seed)
	if err != nil {
		t.Fatal(err)
	}
	return seed, r
}

// TestRotationOnAnotherNodeIsSeenWithinTheRefreshInterval: node B rotates
// the KEK (as the gateway or B's own operator would); node A's shim reports
// the new key_id in Status and encrypts under it once its refresh interval
// and status cache have passed, and decrypts B's new ciphertexts at once
// (an unknown version is read from the store, never refused from cache).
func TestRotationOnAnotherNodeIsSeenWithinTheRefreshInterval(t *testing.T) {
	ctx := context.Background()
	a, b, clk := twoNodes(t)
	old := statusKeyID(t, a.plugin)
	if got := statusKeyID(t, b.plugin); got != old {
		t.Fatalf("the nodes report different key_ids %s and %s for one KEK", old, got)
	}
	oldSeed, oldCT := encrypt(t, a.plugin)

	v, err := b.kw.Rotate(ctx, kmsplugin.DefaultKeyName, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v.KeyID == old {
		t.Fatal("the rotation kept the key_id")
	}
	// B sees its own rotation at once; its ciphertext decrypts on A now,
	// although A's cached active version is still the old one.
	newSeed, newCT := encrypt(t, b.plugin)
	if newCT.KeyID != v.KeyID {
		t.Fatalf("B encrypted under %s, want the rotated %s", newCT.KeyID, v.KeyID)
	}
	for _, tc := range []struct {
		name string
		seed []byte
		ct   *service.EncryptResponse
	}{{"new version, on A", newSeed, newCT}, {"old version, on A", oldSeed, oldCT}} {
		pt, err := a.plugin.Decrypt(ctx, "uid", &service.DecryptRequest{Ciphertext: tc.ct.Ciphertext, KeyID: tc.ct.KeyID})
		if err != nil || string(pt) != string(tc.seed) {
			t.Fatalf("%s: decrypt = %v", tc.name, err)
		}
	}

	// Within the refresh interval plus the status cache, A moves over.
	clk.Advance(refresh + statusTTL)
	if got := statusKeyID(t, a.plugin); got != v.KeyID {
		t.Fatalf("A reports key_id %s %v after the rotation, want %s", got, refresh+statusTTL, v.KeyID)
	}
	if _, r := encrypt(t, a.plugin); r.KeyID != v.KeyID {
		t.Fatalf("A encrypts under %s %v after the rotation, want %s", r.KeyID, refresh+statusTTL, v.KeyID)
	}
}

// TestVersionDestroyedElsewhereIsNotServedFromCache: once a KEK version's
// key is destroyed in the shared custody by another node, a node that
// decrypted with it before cannot decrypt with it any more: only public
// metadata is cached, never key material.
func TestVersionDestroyedElsewhereIsNotServedFromCache(t *testing.T) {
	ctx := context.Background()
	a, b, _ := twoNodes(t)
	seed, ct := encrypt(t, a.plugin)
	if pt, err := a.plugin.Decrypt(ctx, "uid", &service.DecryptRequest{Ciphertext: ct.Ciphertext, KeyID: ct.KeyID}); err != nil || string(pt) != string(seed) {
		t.Fatalf("decrypt before: %v", err)
	}
	_, vs, err := b.kw.Key(ctx, kmsplugin.DefaultKeyName)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.custody.Destroy(ctx, vs[0].KeyRef); err != nil {
		t.Fatal(err)
	}
	if _, err := a.plugin.Decrypt(ctx, "uid", &service.DecryptRequest{Ciphertext: ct.Ciphertext, KeyID: ct.KeyID}); err == nil {
		t.Fatal("A decrypted with a KEK version destroyed by B")
	}
}

func TestRefreshIntervalIsBounded(t *testing.T) {
	for _, tc := range []struct {
		d  time.Duration
		ok bool
	}{{0, true}, {time.Second, true}, {kmsplugin.MaxRefreshInterval, true}, {-time.Second, false}, {kmsplugin.MaxRefreshInterval + time.Second, false}} {
		o := kmsplugin.DefaultOptions()
		o.RefreshInterval = tc.d
		if err := o.Validate(); (err == nil) != tc.ok {
			t.Errorf("RefreshInterval %v: Validate() = %v, want ok %v", tc.d, err, tc.ok)
		}
	}
	if d := kmsplugin.DefaultOptions().RefreshInterval; d <= 0 || d > kmsplugin.MaxRefreshInterval {
		t.Errorf("default refresh interval %v out of (0, %v]", d, kmsplugin.MaxRefreshInterval)
	}
}
