package ca

import (
	"fmt"
	"sync"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// BenchmarkRevokeReissue1000 measures revoking one user with reissue on a
// cluster holding 1,000 valid certificates of 100 users (10 each), over the
// real SQLite store and software custody: the new CA key, 990 re-signed
// certificates, the one transaction that records them, the CRLs and the
// destruction of the retired key. Each iteration starts from a new
// cluster; filling it is not timed.
func BenchmarkRevokeReissue1000(b *testing.B) {
	const users, each = 100, 10
	f := newClusterFixture(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		cluster := fmt.Sprintf("bench-%d", i)
		if _, _, err := f.a.CreateCA(as(admin), cluster, CreateRequest{ProjectID: "p1"}); err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, users)
		for u := range users {
			wg.Go(func() {
				p := auth.Principal{User: fmt.Sprintf("user-%03d", u), Project: "p1", Roles: []string{auth.RoleMember}}
				req := SignRequest{CSR: makeCSR(b, csrOptions{cn: p.User})}
				for range each {
					if _, err := f.a.Sign(as(p), cluster, req); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := f.a.Revoke(as(admin), cluster, RevokeRequest{User: "user-042", Reason: store.ReasonAffiliationChanged, Reissue: true})
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Revoked) != each || len(*res.Reissued) != users*each-each {
			b.Fatalf("revoked %d, re-issued %d", len(res.Revoked), len(*res.Reissued))
		}
	}
}
