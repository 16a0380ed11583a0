package kmsplugin_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"path/filepath"
	"testing"

	"k8s.io/kms/pkg/service"

	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/kmsplugin"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// deployedPlugin returns a Plugin wired as functions/kmsshim wires it:
// SQLite store, software custody with its KEK cache, a keywrap Service and
// metrics registered, the default refresh interval.
func deployedPlugin(b *testing.B) *kmsplugin.Plugin {
	b.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "clusterkeys.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	master := make([]byte, software.MasterKeySize)
	if _, err := rand.Read(master); err != nil {
		b.Fatal(err)
	}
	c, err := software.New(master, db)
	if err != nil {
		b.Fatal(err)
	}
	opts := kmsplugin.DefaultOptions()
	opts.CacheKEKs(c)
	reg := metrics.NewRegistry()
	kw := keywrap.New(db, c, keywrap.Options{Registerer: reg, ActiveTTL: opts.RefreshInterval})
	if _, _, err := kmsplugin.EnsureKey(ctx, kw, opts.Key, opts.KeyProject); err != nil {
		b.Fatal(err)
	}
	m, err := kmsplugin.NewMetrics(reg)
	if err != nil {
		b.Fatal(err)
	}
	p, err := kmsplugin.New(kw, kmsplugin.Config{KeyName: opts.Key, StatusTTL: opts.StatusTTL, Metrics: m})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// floor is what the minimal plugin (test/kmspeer) does per call: one
// AES-GCM operation with a random nonce.
type floor struct{ aead cipher.AEAD }

func newFloor(b *testing.B) floor {
	b.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		b.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	return floor{aead}
}

func (f floor) Encrypt(_ context.Context, _ string, pt []byte) (*service.EncryptResponse, error) {
	nonce := make([]byte, 12, 12+len(pt)+16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return &service.EncryptResponse{Ciphertext: f.aead.Seal(nonce, nonce, pt, []byte("k")), KeyID: "k"}, nil
}

func (f floor) Decrypt(_ context.Context, _ string, req *service.DecryptRequest) ([]byte, error) {
	return f.aead.Open(nil, req.Ciphertext[:12], req.Ciphertext[12:], []byte("k"))
}

// BenchmarkCall is the shim's own work per KMS call (no gRPC) beside the
// floor of one AES-GCM operation, for CPU and allocation profiles:
//
//	go test -run '^$' -bench Call -benchmem -cpuprofile /tmp/cpu.pprof ./pkg/kmsplugin/
func BenchmarkCall(b *testing.B) {
	ctx := context.Background()
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		svc  interface {
			Encrypt(context.Context, string, []byte) (*service.EncryptResponse, error)
			Decrypt(context.Context, string, *service.DecryptRequest) ([]byte, error)
		}
	}{{"shim", deployedPlugin(b)}, {"floor", newFloor(b)}} {
		r, err := c.svc.Encrypt(ctx, "bench", seed)
		if err != nil {
			b.Fatal(err)
		}
		req := &service.DecryptRequest{Ciphertext: r.Ciphertext, KeyID: r.KeyID, Annotations: r.Annotations}
		b.Run("encrypt/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.svc.Encrypt(ctx, "bench", seed); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("decrypt/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.svc.Decrypt(ctx, "bench", req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
