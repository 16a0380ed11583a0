package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
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
	loadRun(b, s.URL+"/v1/clusters/load/certificates", body, http.StatusCreated)
}
