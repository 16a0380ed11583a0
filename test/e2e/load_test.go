package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSignCSRThroughLocalrun is the load run of the issue: sign-CSR
// through a running `localrun serve` over loopback HTTP, 8 concurrent
// clients, reporting req/s, p50 and p99. Run with `make bench`.
func BenchmarkSignCSRThroughLocalrun(b *testing.B) {
	s := startServer(b, serverOpts{})
	r := do(b, "PUT", s.URL+"/v1/clusters/load/ca", adminToken, map[string]any{"key_algorithm": "ecdsa-p256"})
	if r.Status != 201 {
		b.Fatalf("create CA: %d %s", r.Status, r.Body)
	}
	body, err := json.Marshal(map[string]any{"csr": newCSR(b, p256(b), "load-user", nil), "profile": "client"})
	if err != nil {
		b.Fatal(err)
	}
	const clients = 8
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	url := s.URL + "/v1/clusters/load/certificates"

	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	var failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+adminToken)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				var sink bytes.Buffer
				_, _ = sink.ReadFrom(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 201 {
					failed.Add(1)
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d requests failed", n, b.N)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.Log(fmt.Sprintf("%d signs, %d clients: %.0f req/s, p50 %.2f ms, p99 %.2f ms", b.N, clients, float64(b.N)/elapsed.Seconds(), pct(0.5), pct(0.99)))
}
