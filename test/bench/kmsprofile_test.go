package bench

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2"
	kmsservice "k8s.io/kms/pkg/service"

	"github.com/clusterkeys/clusterkeys/pkg/backends"
	_ "github.com/clusterkeys/clusterkeys/pkg/backends/all" // software custody and the SQLite store, as kmsshim links them
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/kmsplugin"
	"github.com/clusterkeys/clusterkeys/test/kmspeer"
)

// BenchmarkKMSShimInProcess runs the shim in this process, wired as
// functions/kmsshim wires it (software custody, SQLite, default options),
// under 8 parallel callers of Encrypt then Decrypt, so that -cpuprofile and
// -memprofile show where the shim's time goes (the client's share is in the
// profile too; focus on pkg/kmsplugin, pkg/keywrap and below):
//
//	cd test && CLUSTERKEYS_PEER_BENCH=1 go test -run '^$' -bench KMSShimInProcess \
//	  -cpuprofile /tmp/cpu.pprof -memprofile /tmp/mem.pprof ./bench/
func BenchmarkKMSShimInProcess(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := config.Default()
	cfg.StateDir = b.TempDir()
	cfg.Keys = "software"
	cfg, err := cfg.Resolve()
	if err != nil {
		b.Fatal(err)
	}
	opts := kmsplugin.DefaultOptions()
	opts.Registry = kmsplugin.NewRegistry()
	sockDir := b.TempDir()
	if len(sockDir) > 80 {
		sockDir = "/tmp"
	}
	opts.Listen = "unix://" + filepath.Join(sockDir, "kmsbench.sock")
	bk, err := backends.Open(ctx, cfg, nil, opts.Registry)
	if err != nil {
		b.Fatal(err)
	}
	defer bk.Close()
	opts.CacheKEKs(bk.Custody)
	kw := keywrap.New(bk.Store, bk.Custody, keywrap.Options{Registerer: opts.Registry, ActiveTTL: opts.RefreshInterval})
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- kmsplugin.Run(ctx, opts, kw, nil, func(*kmsplugin.Server) { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		b.Fatal(err)
	}
	defer func() { cancel(); <-done }()
	benchKMSCalls(ctx, b, opts.Listen)
}

// BenchmarkKMSPeerInProcess is BenchmarkKMSShimInProcess for the minimal
// plugin (test/kmspeer with an in-memory AES-256-GCM key), to compare
// profiles taken the same way.
func BenchmarkKMSPeerInProcess(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	sockDir := b.TempDir()
	if len(sockDir) > 80 {
		sockDir = "/tmp"
	}
	sock := filepath.Join(sockDir, "kmspeer.sock")
	srv, err := kmspeer.Serve(sock, kmspeer.New("bench-peer-1", aead))
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	benchKMSCalls(ctx, b, "unix://"+sock)
}

// benchKMSCalls drives Encrypt and Decrypt on the plugin at endpoint with
// kube-apiserver's client, from 1 caller and from 8.
func benchKMSCalls(ctx context.Context, b *testing.B, endpoint string) {
	c, err := kmsv2.NewGRPCService(ctx, endpoint, "bench", 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	seed := make([]byte, 32)
	_, _ = rand.Read(seed)
	r, err := c.Encrypt(ctx, "bench", seed)
	if err != nil {
		b.Fatal(err)
	}
	req := &kmsservice.DecryptRequest{Ciphertext: r.Ciphertext, KeyID: r.KeyID, Annotations: r.Annotations}
	b.Run("encrypt-1caller", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Encrypt(ctx, "bench", seed); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decrypt-1caller", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Decrypt(ctx, "bench", req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.SetParallelism(4) // 8 callers on 2 CPUs
	b.Run("encrypt", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Encrypt(ctx, "bench", seed); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("decrypt", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Decrypt(ctx, "bench", req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
