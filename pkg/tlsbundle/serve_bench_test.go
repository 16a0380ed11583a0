package tlsbundle

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/gateway"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
)

// benchChain is the chain of test/bench's comparison with cfssl's bundle
// API: a P-256 root (given as ca_bundle), one intermediate, a P-256 leaf
// and its SEC1 key.
func benchChain(tb testing.TB) Input {
	tb.Helper()
	return benchChains(tb, 1)[0]
}

// benchChains is n bundles of benchChain's shape, each with its own leaf
// and key, all with the same intermediate and root (test/bench's "new
// leaves" load).
func benchChains(tb testing.TB, n int) []Input {
	tb.Helper()
	now := time.Now()
	span := func(s certSpec) certSpec {
		s.notBefore, s.notAfter = now.Add(-time.Hour), now.Add(90*24*time.Hour)
		return s
	}
	root, rootKey, err := issue(span(certSpec{cn: "bench root", ca: true}), nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	inter, interKey, err := issue(span(certSpec{cn: "bench intermediate", ca: true}), root, rootKey)
	if err != nil {
		tb.Fatal(err)
	}
	ins := make([]Input, n)
	for i := range ins {
		leaf, leafKey, err := issue(span(certSpec{cn: "www.bench.test", dns: []string{"www.bench.test"}}), inter, interKey)
		if err != nil {
			tb.Fatal(err)
		}
		der, err := x509.MarshalECPrivateKey(leafKey.(*ecdsa.PrivateKey))
		if err != nil {
			tb.Fatal(err)
		}
		ins[i] = Input{
			Certificate: certPEM(leaf), Intermediates: certPEM(inter), CABundle: certPEM(root),
			PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})),
		}
	}
	return ins
}

// benchServer is a gateway serving v's route, as localrun serves it.
func benchServer(tb testing.TB, v *Validator) func(body []byte) *httptest.ResponseRecorder {
	tb.Helper()
	g, err := gateway.New(gateway.Config{Auth: fixedAuth{auth.Principal{User: "bench", Project: "p1", Roles: []string{auth.RoleReader}}},
		Registry: metrics.NewRegistry()}, Routes(v)...)
	if err != nil {
		tb.Fatal(err)
	}
	return func(body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/v1/tls/validate", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		return rec
	}
}

// BenchmarkServeValidate measures POST /v1/tls/validate in process, through
// the real gateway (authentication, limits, strict decoding, the JSON
// answer) without the network, on test/bench's chain, the same bundle every
// time as the load generator sends it: with the Validator's caches (after
// the first request, no certificate is parsed and no signature checked)
// and without them (as a bundle never seen before).
func BenchmarkServeValidate(b *testing.B) {
	body, err := json.Marshal(benchChain(b))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name    string
		noCache bool
	}{{"cached", false}, {"no-cache", true}} {
		b.Run(bc.name, func(b *testing.B) {
			serve := benchServer(b, NewValidator(Options{Registerer: metrics.NewRegistry(), NoCache: bc.noCache}))
			if rec := serve(body); rec.Code != http.StatusOK {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			b.ReportAllocs()
			cpu0 := processCPU(b)
			for b.Loop() {
				serve(body)
			}
			b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkServeValidateNewLeaves is BenchmarkServeValidate's cached case
// with test/bench's "new leaves" load: each request carries a leaf and key
// the Validator has not seen, with the intermediate and root it has. When
// the pool of leaves runs out, a new Validator (with empty caches) takes
// over, one request in len(pool) that finds nothing remembered.
func BenchmarkServeValidateNewLeaves(b *testing.B) {
	const pool = 2048
	var bodies [][]byte
	for _, in := range benchChains(b, pool) {
		body, err := json.Marshal(in)
		if err != nil {
			b.Fatal(err)
		}
		bodies = append(bodies, body)
	}
	var serve func([]byte) *httptest.ResponseRecorder
	b.ReportAllocs()
	cpu0 := processCPU(b)
	i := 0
	for b.Loop() {
		if i%pool == 0 {
			serve = benchServer(b, NewValidator(Options{Registerer: metrics.NewRegistry()}))
		}
		if rec := serve(bodies[i%pool]); rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		i++
	}
	b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// processCPU is the user and system CPU time of this process so far: per
// operation, other processes on a shared machine disturb it less than the
// wall-clock ns/op.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
