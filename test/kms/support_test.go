// Package kms drives the clusterkeys KMS shim with kube-apiserver's own KMS
// v2 client (k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2) over
// a real unix socket: the shim in process (pkg/kmsplugin over the real
// keywrap service and software custody) and the built functions/kmsshim
// binary.
package kms

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apiserver/pkg/storage/value"
	"k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2"
	kmsservice "k8s.io/kms/pkg/service"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/kmsplugin"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// providerName is the KMS provider name, as in an EncryptionConfiguration.
const providerName = "clusterkeys"

// prefix is what kube-apiserver puts before a KMS v2 value in etcd.
const prefix = "k8s:enc:kms:v2:" + providerName + ":"

// newStore opens the real SQLite metadata store in a fresh directory.
func newStore(t testing.TB) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "clusterkeys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// switchableCustody is real custody that can be made unavailable, as an
// unreachable HSM is.
type switchableCustody struct {
	keywrap.Custody
	down atomic.Bool
}

func (c *switchableCustody) check() error {
	if c.down.Load() {
		return fmt.Errorf("token not reachable: %w", api.ErrUnavailable)
	}
	return nil
}

func (c *switchableCustody) Seal(ctx context.Context, ref string, plaintext, aad []byte) ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	return c.Custody.Seal(ctx, ref, plaintext, aad)
}

func (c *switchableCustody) Open(ctx context.Context, ref string, ciphertext, aad []byte) ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	return c.Custody.Open(ctx, ref, ciphertext, aad)
}

// newKeywrap returns the real wrap service over software custody with a
// fresh master key and the SQLite store.
func newKeywrap(t testing.TB) *keywrap.Service {
	t.Helper()
	kw, _ := newSwitchableKeywrap(t)
	return kw
}

// newSwitchableKeywrap is newKeywrap whose custody can be switched off.
func newSwitchableKeywrap(t testing.TB) (*keywrap.Service, *switchableCustody) {
	t.Helper()
	mk := make([]byte, software.MasterKeySize)
	if _, err := rand.Read(mk); err != nil {
		t.Fatal(err)
	}
	st := newStore(t)
	c, err := software.New(mk, st)
	if err != nil {
		t.Fatal(err)
	}
	sc := &switchableCustody{Custody: c}
	return keywrap.New(st, sc, keywrap.Options{ActiveTTL: -1}), sc
}

// socketDir returns a short directory for unix sockets (t.TempDir paths can
// exceed the 107 bytes of sun_path).
func socketDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ckkms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// startShim runs kmsplugin.Run in process on a fresh socket over the real
// wrap service and returns the socket path and the service (to rotate).
func startShim(t testing.TB, key string, statusTTL time.Duration) (string, *keywrap.Service) {
	t.Helper()
	sock, kw, _ := startShimWithMetrics(t, key, statusTTL)
	return sock, kw
}

// startShimWithMetrics is startShim that also returns the shim's metrics.
func startShimWithMetrics(t testing.TB, key string, statusTTL time.Duration) (string, *keywrap.Service, *prometheus.Registry) {
	t.Helper()
	return startShimOver(t, newKeywrap(t), key, statusTTL)
}

// startShimOver runs the shim in process over kw.
func startShimOver(t testing.TB, kw *keywrap.Service, key string, statusTTL time.Duration) (string, *keywrap.Service, *prometheus.Registry) {
	t.Helper()
	sock := filepath.Join(socketDir(t), "kms.sock")
	o := kmsplugin.DefaultOptions()
	o.Registry = prometheus.NewRegistry()
	o.Listen = "unix://" + sock
	o.Key = key
	o.StatusTTL = statusTTL
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- kmsplugin.Run(ctx, o, kw, nil, func(*kmsplugin.Server) { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("shim: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("shim not ready after 20s")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shim stopped with %v", err)
		}
	})
	return sock, kw, o.Registry
}

// opsCount returns the shim's count of successful calls of op.
func opsCount(t testing.TB, reg *prometheus.Registry, op string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "clusterkeys_kms_operations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var opOK, codeOK bool
			for _, l := range m.GetLabel() {
				opOK = opOK || (l.GetName() == "op" && l.GetValue() == op)
				codeOK = codeOK || (l.GetName() == "code" && l.GetValue() == "OK")
			}
			if opOK && codeOK {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// kubeClient is kube-apiserver's KMS v2 gRPC client on sock.
func kubeClient(t testing.TB, sock string) kmsservice.Service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := kmsv2.NewGRPCService(ctx, "unix://"+sock, providerName, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// writeTransformer does what kube-apiserver's encryption config controller
// does on a key_id change: generates a seed, has the plugin encrypt it and
// builds the prefixed envelope transformer that writes with it.
func writeTransformer(t testing.TB, c kmsservice.Service) (value.Transformer, *kmsv2.State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr, obj, cacheKey, err := kmsv2.GenerateTransformer(ctx, "test-uid", c, true)
	if err != nil {
		t.Fatalf("GenerateTransformer: %v", err)
	}
	st := &kmsv2.State{
		Transformer:                           tr,
		EncryptedObjectKeyID:                  obj.KeyID,
		EncryptedObjectEncryptedDEKSource:     obj.EncryptedDEKSource,
		EncryptedObjectAnnotations:            obj.Annotations,
		EncryptedObjectEncryptedDEKSourceType: obj.EncryptedDEKSourceType,
		UID:                                   "test-uid",
		ExpirationTimestamp:                   time.Now().Add(3 * time.Minute),
		CacheKey:                              cacheKey,
		KMSProviderName:                       providerName,
	}
	env := kmsv2.NewEnvelopeTransformer(c, providerName, func() (kmsv2.State, error) { return *st, nil }, "apiserver-test")
	return prefixed(env), st
}

// readTransformer is a fresh kube-apiserver view (cold DEK cache, new
// connection): reading any value goes through the plugin's Decrypt. Its
// write state names keyID.
func readTransformer(t testing.TB, sock string) value.Transformer {
	t.Helper()
	c := kubeClient(t, sock)
	tr, _ := writeTransformer(t, c)
	return tr
}

// coldReader is a fresh kube-apiserver view (new connection, empty DEK
// cache) whose write state is st: it reads without calling Encrypt.
func coldReader(t testing.TB, sock string, st *kmsv2.State) value.Transformer {
	t.Helper()
	c := kubeClient(t, sock)
	return prefixed(kmsv2.NewEnvelopeTransformer(c, providerName, func() (kmsv2.State, error) { return *st, nil }, "apiserver-test"))
}

func prefixed(t value.Transformer) value.Transformer {
	return value.NewPrefixTransformers(fmt.Errorf("no KMS v2 prefix"), value.PrefixTransformer{Prefix: []byte(prefix), Transformer: t})
}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// metricValueOf returns the value of the unlabelled counter or gauge name.
func metricValueOf(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
