package ca

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// TestReissueUnderBackToBackSigns revokes alice with reissue while bob signs
// back to back, without a pause, on the real SQLite store and software
// custody: the revocation answers 200 (it used to give up with 409 conflict
// after its attempts), and afterwards no certificate is left valid under
// the old CA unless it was re-issued or its sign was refused as a rekey
// race (409 generation_mismatch, never handed out).
func TestReissueUnderBackToBackSigns(t *testing.T) {
	const signed = 300 // before the revocation: the first attempt's window
	for _, grace := range []int64{0, 3600} {
		t.Run(fmt.Sprintf("grace %d s", grace), func(t *testing.T) {
			f := newClusterFixture(t)
			ctx := context.Background()
			alices, _ := f.signAs(t, member)
			csr := makeCSR(t, csrOptions{cn: "bob"})
			for range signed {
				if _, err := f.a.Sign(as(bob), "c1", SignRequest{CSR: csr}); err != nil {
					t.Fatal(err)
				}
			}
			var (
				mu      sync.Mutex
				handed  []SignResult
				refused int
				signErr error
				stop    = make(chan struct{})
				started = make(chan struct{})
				once    sync.Once
				wg      sync.WaitGroup
			)
			begin := func() { once.Do(func() { close(started) }) }
			wg.Go(func() {
				defer begin()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if i == 5 {
						begin() // bob is signing: revoke now
					}
					res, err := f.a.Sign(as(bob), "c1", SignRequest{CSR: csr})
					mu.Lock()
					switch status, code := codeOf(err); {
					case err == nil:
						handed = append(handed, res)
					case status == 409 && code == api.CodeGenerationMismatch:
						refused++
					default:
						signErr = err
					}
					mu.Unlock()
					if signErr != nil {
						return
					}
				}
			})
			<-started
			body := fmt.Sprintf(`{"user":"alice","reason":"affiliationChanged","reissue":true,"grace_period_seconds":%d}`, grace)
			rec := serve(t, Routes(f.a), &admin, "POST", "/v1/clusters/c1/revocations", "application/json", body, nil)
			close(stop)
			wg.Wait()
			if signErr != nil {
				t.Fatalf("a sign during the reissue: %v", signErr)
			}
			var res RevokeResult
			if err := json.Unmarshal(rec.Body.Bytes(), &res); rec.Code != 200 || err != nil {
				t.Fatalf("revoke with reissue while bob signs back to back: %d %s", rec.Code, rec.Body)
			}
			if res.CAGeneration != 2 || len(res.Revoked) != 1 || res.Revoked[0] != alices.Serial || res.Reissued == nil {
				t.Fatalf("reissue answered %s", rec.Body)
			}
			// Every certificate handed out under the old CA was re-issued.
			for _, h := range handed {
				if h.CAGeneration != 1 {
					continue
				}
				got, err := f.st.Certificate(ctx, "c1", h.Serial)
				if err != nil || got.SupersededBy == "" {
					t.Fatalf("%s, handed out under the old CA, was not re-issued: %+v, %v", h.Serial, got, err)
				}
			}
			// In the registry, a certificate valid now is of the new
			// generation, or (during a grace) re-issued, or one whose sign
			// was refused.
			certs, err := f.st.Certificates(ctx, store.CertificateQuery{Cluster: "c1", Limit: 100000})
			if err != nil {
				t.Fatal(err)
			}
			now := f.clock.Now()
			leftOld := 0
			for _, c := range certs {
				if c.Generation == 2 || (!c.RevokedAt.IsZero() && !c.RevokedAt.After(now)) {
					continue
				}
				got, err := f.st.Certificate(ctx, "c1", c.Serial)
				if err != nil {
					t.Fatal(err)
				}
				if got.SupersededBy == "" {
					leftOld++
				}
			}
			if grace == 0 && leftOld > 0 {
				t.Fatalf("%d certificates are left valid under the old CA, not re-issued, with no grace", leftOld)
			}
			if leftOld > refused {
				t.Fatalf("%d certificates are left valid under the old CA, not re-issued; only %d signs were refused", leftOld, refused)
			}
			t.Logf("%d signs handed out, %d refused as a rekey race; %d re-issued", len(handed), refused, len(*res.Reissued))
		})
	}
}

// TestReissueLastAttemptSignsEverythingInside has more certificates than
// maxResignInTransaction recorded after every read of the candidates: the
// attempts before the last give up on them (signing them would keep every
// sign waiting), the last signs them inside the transaction, and the
// reissue completes with every certificate re-issued.
func TestReissueLastAttemptSignsEverythingInside(t *testing.T) {
	f := newClusterFixture(t)
	f.signAs(t, member)
	f.signAs(t, bob)
	st := &signingMeanwhile{DB: f.st, times: maxReissueAttempts}
	a := f.with(st, f.keys)
	csr := makeCSR(t, csrOptions{cn: "bob"})
	var during []string
	st.sign = func() {
		for range maxResignInTransaction + 1 {
			res, err := a.Sign(as(bob), "c1", SignRequest{CSR: csr})
			if err != nil {
				t.Errorf("a sign during the reissue: %v", err)
				return
			}
			during = append(during, res.Serial)
		}
	}
	res, err := a.Revoke(as(admin), "c1", RevokeRequest{User: "alice", Reason: store.ReasonAffiliationChanged, Reissue: true})
	if err != nil {
		t.Fatalf("a reissue while %d certificates land after each read: %v", maxResignInTransaction+1, err)
	}
	if st.times != 0 {
		t.Fatalf("the reissue read the candidates %d times, want %d", maxReissueAttempts-st.times, maxReissueAttempts)
	}
	replaced := map[string]bool{}
	for _, r := range *res.Reissued {
		replaced[r.Serial] = true
	}
	for _, s := range during {
		if !replaced[s] {
			t.Fatalf("%s, signed during the reissue, was not re-issued", s)
		}
	}
	if len(replaced) != 1+len(during) {
		t.Fatalf("re-issued %d certificates, want bob's %d", len(replaced), 1+len(during))
	}
}

// TestReissueKeepsItsNewCALoaded checks that a reissue leaves the new CA
// it generated, and signed with, in the signer cache: the CRL it builds
// and the next sign load no key from custody.
func TestReissueKeepsItsNewCALoaded(t *testing.T) {
	f := newClusterFixture(t)
	own, _ := f.signAs(t, member)
	if _, err := f.a.Revoke(as(admin), "c1", RevokeRequest{Serial: own.Serial, Reason: store.ReasonKeyCompromise, Reissue: true}); err != nil {
		t.Fatal(err)
	}
	kl := f.keys
	kl.mu.Lock()
	before := kl.signerCalls
	kl.mu.Unlock()
	f.signAs(t, member)
	kl.mu.Lock()
	defer kl.mu.Unlock()
	if kl.signerCalls != before || before != 1 {
		t.Errorf("custody signers loaded: %d before the reissue's end, %d after the next sign; want 1 (the first sign's) and no more", before, kl.signerCalls)
	}
}
