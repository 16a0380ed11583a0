package pkcs11

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// The wrap/unwrap function on token KEKs and the real metadata store: the
// same behaviour as on software custody, and a token fault is a 503, never
// a 4xx or a 500.
func TestKeywrapOnTheToken(t *testing.T) {
	tok := newToken(t)
	c := openCustody(t, tok, Options{})
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "clusterkeys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc := keywrap.New(db, c, keywrap.Options{})
	if _, _, _, err := svc.Create(ctx, "etcd", "kube-system"); err != nil {
		t.Fatal(err)
	}
	seed := []byte("0123456789abcdef0123456789abcdef")
	ct, v1, err := svc.Wrap(ctx, "etcd", seed, []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) > 1024 {
		t.Fatalf("a wrapped seed is %d bytes, over kube-apiserver's 1 KiB", len(ct))
	}
	t.Run("old versions unwrap after a rotation", func(t *testing.T) {
		if _, err := svc.Rotate(ctx, "etcd", v1.Version); err != nil {
			t.Fatal(err)
		}
		pt, v, err := svc.Unwrap(ctx, "etcd", ct, []byte("aad"))
		if err != nil || !bytes.Equal(pt, seed) || v.Version != 1 {
			t.Fatalf("Unwrap = v%d, %v", v.Version, err)
		}
	})
	t.Run("tampering and a wrong aad are decrypt_failed", func(t *testing.T) {
		bad := bytes.Clone(ct)
		bad[len(bad)-3] ^= 1
		for _, tc := range []struct {
			ct, aad []byte
		}{{bad, []byte("aad")}, {ct, []byte("other")}} {
			_, _, err := svc.Unwrap(ctx, "etcd", tc.ct, tc.aad)
			if e := api.ErrorFor(err); e.Status != http.StatusBadRequest || e.Code != keywrap.CodeDecryptFailed {
				t.Fatalf("err = %v (%d %s)", err, e.Status, e.Code)
			}
		}
	})
	t.Run("with the token gone wrap and unwrap are 503, and work again after", func(t *testing.T) {
		away := tok.dir + ".away"
		if err := os.Rename(tok.dir, away); err != nil {
			t.Fatal(err)
		}
		_, _, werr := svc.Wrap(ctx, "etcd", seed, nil)
		_, _, uerr := svc.Unwrap(ctx, "etcd", ct, []byte("aad"))
		if err := os.Rename(away, tok.dir); err != nil {
			t.Fatal(err)
		}
		for _, err := range []error{werr, uerr} {
			if !errors.Is(err, api.ErrUnavailable) || api.ErrorFor(err).Status != http.StatusServiceUnavailable {
				t.Fatalf("err = %v, want 503", err)
			}
		}
		waitHealthy(t, c, 5*time.Second)
		if _, _, err := svc.Unwrap(ctx, "etcd", ct, []byte("aad")); err != nil {
			t.Fatal(err)
		}
	})
}
