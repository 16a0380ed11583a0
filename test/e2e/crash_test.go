package e2e

import (
	"crypto/x509"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestKilledDuringRekeysLeavesOneActiveCA SIGKILLs localrun while clients
// rekey and sign the same cluster as fast as they can, restarts it on the
// same state, and checks what DESIGN promises of a crash at any step: one
// active CA, no forked or lost generation, and the service works on.
func TestKilledDuringRekeysLeavesOneActiveCA(t *testing.T) {
	state := t.TempDir()
	s := startServer(t, serverOpts{stateDir: state})
	createCA(t, s, memberToken, "crash-1", nil)

	var (
		mu   sync.Mutex
		seen = map[int]int{} // generation → rekeys that answered it
		oks  atomic.Int64
		wg   sync.WaitGroup
		stop = make(chan struct{})
	)
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := tryDo("POST", s.URL+"/v1/clusters/crash-1/ca/rekey", memberToken, `{}`)
				if err != nil {
					return // the server is gone
				}
				if r.Status == 200 {
					var ca caResource
					if json.Unmarshal(r.Body, &ca) != nil {
						return
					}
					mu.Lock()
					seen[ca.Generation]++
					mu.Unlock()
					oks.Add(1)
				}
			}
		})
	}
	csr := newCSR(t, p256(t), "alice", nil)
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := tryDo("POST", s.URL+"/v1/clusters/crash-1/certificates", memberToken, map[string]any{"csr": csr, "profile": "client"}); err != nil {
					return
				}
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = s.cmd.Wait()
	close(stop)
	wg.Wait()
	if oks.Load() == 0 {
		t.Fatal("no rekey succeeded before the kill: the test proves nothing")
	}
	for g, n := range seen {
		if n != 1 {
			t.Fatalf("generation %d was answered to %d rekeys: a fork", g, n)
		}
	}

	s2 := startServer(t, serverOpts{stateDir: state})
	var ca caResource
	if r := do(t, "GET", s2.URL+"/v1/clusters/crash-1/ca", memberToken, nil); r.Status != 200 {
		t.Fatalf("CA after the restart: %d %s", r.Status, r.Body)
	} else {
		r.json(t, &ca)
	}
	answered := int(oks.Load())
	// Generation 1 plus every rekey that answered, plus at most the three
	// that were in flight when the process died.
	if ca.Generation < 1+answered || ca.Generation > 1+answered+3 {
		t.Fatalf("generation %d after %d answered rekeys: a lost or phantom generation", ca.Generation, answered)
	}
	for g := range seen {
		if g > ca.Generation {
			t.Fatalf("a rekey answered generation %d, but the CA is at %d after the restart: lost", g, ca.Generation)
		}
	}
	if ca.TrustBundle != ca.Certificate {
		t.Fatalf("grace 0 everywhere, yet the trust bundle holds more than the active CA")
	}
	c := sign(t, s2, memberToken, "crash-1", map[string]any{"csr": newCSR(t, p256(t), "alice", nil), "profile": "client"})
	if err := verifies(t, c.Certificate, ca.TrustBundle, x509.ExtKeyUsageClientAuth); err != nil || c.CAGeneration != ca.Generation {
		t.Fatalf("a certificate signed after the restart (generation %d): %v", c.CAGeneration, err)
	}
	if r := do(t, "POST", s2.URL+"/v1/clusters/crash-1/ca/rekey", memberToken, map[string]any{"expected_generation": ca.Generation}); r.Status != 200 {
		t.Fatalf("rekey after the restart: %d %s", r.Status, r.Body)
	}
	t.Logf("%d rekeys answered before SIGKILL; generation %d after the restart", answered, ca.Generation)
}
