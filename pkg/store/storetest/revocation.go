package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// revocationCases are the cases of issue 12: explicit revocations, user
// revocations and their race with RecordCertificate, user counts, CRL
// caching and numbering, and the reissue transaction.
var revocationCases = []struct {
	name string
	run  func(*testing.T, NewStore)
}{
	{"CertificateKeepsDER", testCertificateKeepsDER},
	{"RevokeCertificate", testRevokeCertificate},
	{"RevokeUser", testRevokeUser},
	{"RevokeUserRacingRecords", testRevokeUserRacingRecords},
	{"Users", testUsers},
	{"CRLCache", testCRLCache},
	{"Reissue", testReissue},
	{"ReissueRefusals", testReissueRefusals},
	{"ReissueMeanwhile", testReissueMeanwhile},
	{"ReissueRacingRecords", testReissueRacingRecords},
}

// userCert is Cert n of cluster requested by user.
func userCert(cluster string, gen, n int, user string) store.IssuedCertificate {
	c := Cert(cluster, gen, n)
	c.User = user
	c.CertificateDER = fmt.Appendf(nil, "der of certificate %d", n)
	return c
}

func revocation(cluster, serial, user string, at time.Time) store.Revocation {
	return store.Revocation{Cluster: cluster, Serial: serial, User: user, Reason: store.ReasonKeyCompromise, By: "root", At: at}
}

func testCertificateKeepsDER(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	CreateCluster(t, d, "c")
	withDER, without := userCert("c", 1, 1, "alice"), Cert("c", 1, 2)
	for _, c := range []store.IssuedCertificate{withDER, without} {
		if err := d.RecordCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	got, err := d.Certificate(ctx, "c", withDER.Serial)
	if err != nil || !bytes.Equal(got.CertificateDER, withDER.CertificateDER) || got.User != "alice" ||
		got.RevocationReason != "" || got.SupersededBy != "" || !got.IssuedAt.Equal(withDER.IssuedAt) {
		t.Fatalf("Certificate = %+v, %v", got, err)
	}
	if got, err := d.Certificate(ctx, "c", without.Serial); err != nil || got.CertificateDER != nil {
		t.Fatalf("an entry without DER: %+v, %v", got, err)
	}
	if _, err := d.Certificate(ctx, "c", "ff"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("unknown serial: %v, want ErrNotFound", err)
	}
}

func testRevokeCertificate(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	CreateCluster(t, d, "c")
	c := userCert("c", 1, 1, "alice")
	if err := d.RecordCertificate(ctx, c); err != nil {
		t.Fatal(err)
	}
	at := T0.Add(time.Hour)
	if _, err := d.RevokeCertificate(ctx, revocation("c", "ff", "", at)); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("unknown serial: %v, want ErrNotFound", err)
	}
	_, rev0, err := d.CRL(ctx, "c", 1)
	if err != nil {
		t.Fatal(err)
	}
	serials, err := d.RevokeCertificate(ctx, revocation("c", c.Serial, "", at))
	if err != nil || !slices.Equal(serials, []string{c.Serial}) {
		t.Fatalf("RevokeCertificate = %v, %v", serials, err)
	}
	got, err := d.Certificate(ctx, "c", c.Serial)
	if err != nil || got.RevocationReason != store.ReasonKeyCompromise || !got.RevokedAt.Equal(at) {
		t.Fatalf("the revoked certificate: %+v, %v", got, err)
	}
	_, rev1, err := d.CRL(ctx, "c", 1)
	if err != nil || rev1 <= rev0 {
		t.Fatalf("revision %d after a revocation, %d before (%v)", rev1, rev0, err)
	}
	again := revocation("c", c.Serial, "", at.Add(time.Hour))
	again.Reason = store.ReasonSuperseded
	serials, err = d.RevokeCertificate(ctx, again)
	got, _ = d.Certificate(ctx, "c", c.Serial)
	if err != nil || !slices.Equal(serials, []string{c.Serial}) || got.RevocationReason != store.ReasonKeyCompromise || !got.RevokedAt.Equal(at) {
		t.Fatalf("a second revocation changed the first: %v %+v, %v", serials, got, err)
	}
	if _, rev2, _ := d.CRL(ctx, "c", 1); rev2 != rev1 {
		t.Fatalf("a repeated revocation moved the revision from %d to %d", rev1, rev2)
	}
	// A certificate in the grace of a rekey is revoked at the explicit
	// instant, earlier than the end of the grace.
	late := userCert("c", 1, 2, "bob")
	if err := d.RecordCertificate(ctx, late); err != nil {
		t.Fatal(err)
	}
	if err := d.Rekey(ctx, "c", 1, Generation("c", 2), at, at.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.RevokeCertificate(ctx, revocation("c", late.Serial, "", at.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Certificate(ctx, "c", late.Serial); err != nil || !got.RevokedAt.Equal(at.Add(time.Hour)) {
		t.Fatalf("revoking a certificate in its grace: %+v, %v", got, err)
	}
}

func testRevokeUser(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	CreateCluster(t, d, "c")
	CreateCluster(t, d, "other")
	at := T0.Add(time.Hour)
	for i, u := range []string{"alice", "bob", "alice"} {
		if err := d.RecordCertificate(ctx, userCert("c", 1, i+1, u)); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.RecordCertificate(ctx, userCert("other", 1, 9, "alice")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.RevokeUser(ctx, revocation("nope", "", "alice", at)); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("a missing cluster: %v, want ErrNotFound", err)
	}
	serials, err := d.RevokeUser(ctx, revocation("c", "", "alice", at))
	want := []string{Cert("c", 1, 1).Serial, Cert("c", 1, 3).Serial}
	if err != nil || !slices.Equal(serials, want) {
		t.Fatalf("RevokeUser = %v, %v; want %v", serials, err, want)
	}
	if serials, err := d.RevokeUser(ctx, revocation("c", "", "alice", at.Add(time.Hour))); err != nil || len(serials) != 0 {
		t.Fatalf("a repeated RevokeUser = %v, %v; want nothing more revoked", serials, err)
	}
	for n, wantReason := range map[int]string{1: store.ReasonKeyCompromise, 2: "", 3: store.ReasonKeyCompromise} {
		got, err := d.Certificate(ctx, "c", Cert("c", 1, n).Serial)
		if err != nil || got.RevocationReason != wantReason || (wantReason != "") != got.RevokedAt.Equal(at) {
			t.Fatalf("certificate %d: %+v, %v; want reason %q", n, got, err, wantReason)
		}
	}
	err = d.RecordCertificate(ctx, userCert("c", 1, 4, "alice"))
	if !errors.Is(err, api.ErrUserRevoked) {
		t.Fatalf("a revoked user's certificate was recorded: %v", err)
	}
	if _, err := d.Certificate(ctx, "c", Cert("c", 1, 4).Serial); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("the refused certificate is in the registry: %v", err)
	}
	if err := d.RecordCertificate(ctx, userCert("other", 1, 10, "alice")); err != nil {
		t.Fatalf("alice on another cluster: %v", err)
	}
	if err := d.RecordCertificate(ctx, userCert("c", 1, 5, "bob")); err != nil {
		t.Fatalf("bob: %v", err)
	}
	revs, err := d.UserRevocations(ctx, "c", 10)
	if err != nil || len(revs) != 1 || revs[0].User != "alice" || revs[0].Reason != store.ReasonKeyCompromise ||
		revs[0].RevokedBy != "root" || !revs[0].RevokedAt.Equal(at) {
		t.Fatalf("UserRevocations = %+v, %v", revs, err)
	}
	if err := d.LiftUserRevocation(ctx, "c", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := d.LiftUserRevocation(ctx, "c", "alice"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("lifting twice: %v, want ErrNotFound", err)
	}
	if err := d.RecordCertificate(ctx, userCert("c", 1, 4, "alice")); err != nil {
		t.Fatalf("after the lift: %v", err)
	}
	if got, _ := d.Certificate(ctx, "c", Cert("c", 1, 1).Serial); got.RevocationReason == "" {
		t.Fatal("the lift un-revoked a certificate")
	}
}

// testRevokeUserRacingRecords records certificates of alice from two
// handles while a third revokes her: afterwards every certificate of hers
// in the registry is revoked, and every record that failed failed with
// api.ErrUserRevoked.
func testRevokeUserRacingRecords(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	first, another := newStore(t)
	dbs := []Store{first, another(), another()}
	CreateCluster(t, dbs[0], "c")
	at := T0.Add(time.Hour)
	const workers, each = 4, 30
	var wg sync.WaitGroup
	errs := make(chan error, workers*each+1)
	start := make(chan struct{})
	var recorded atomic.Int64
	for w := range workers {
		wg.Go(func() {
			<-start
			for i := range each {
				n := 1 + w*each + i
				err := dbs[w%2].RecordCertificate(ctx, userCert("c", 1, n, "alice"))
				switch {
				case err == nil:
					recorded.Add(1)
				case !errors.Is(err, api.ErrUserRevoked):
					errs <- err
				}
			}
		})
	}
	wg.Go(func() {
		<-start
		// Revoke midway, while the records go on.
		for recorded.Load() < workers*each/3 {
			time.Sleep(100 * time.Microsecond)
		}
		if _, err := dbs[2].RevokeUser(ctx, revocation("c", "", "alice", at)); err != nil {
			errs <- err
		}
	})
	release(t, start, &wg, errs)
	certs, err := dbs[0].Certificates(ctx, All("c"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range certs {
		got, err := dbs[0].Certificate(ctx, "c", c.Serial)
		if err != nil || got.RevocationReason == "" || got.RevokedAt.IsZero() || got.RevokedAt.After(at) {
			t.Fatalf("certificate %s of the revoked user escaped the revocation: %+v, %v", c.Serial, got, err)
		}
	}
	t.Logf("%d certificates recorded before the revocation, %d refused", len(certs), workers*each-len(certs))
}

func testUsers(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	CreateCluster(t, d, "c")
	now := T0.Add(30 * time.Hour) // certificates 1..360 minutes in: expired past 24h of issue... see below
	records := []store.IssuedCertificate{
		userCert("c", 1, 1, "bob"),   // expired at now
		userCert("c", 1, 2, "alice"), // revoked below
		userCert("c", 1, 3, "alice"),
	}
	records[2].NotAfter = now.Add(time.Hour)
	records[1].NotAfter = now.Add(time.Hour)
	other := userCert("c", 1, 4, "alice")
	other.Project = "p2"
	other.NotAfter = now.Add(time.Hour)
	records = append(records, other)
	for _, c := range records {
		if err := d.RecordCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.RevokeCertificate(ctx, revocation("c", records[1].Serial, "", T0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	got, err := d.Users(ctx, "c", now, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.UserCount{
		{User: "alice", Project: "proj-c", Valid: 1, Revoked: 1, LastIssued: utc(records[2].IssuedAt)},
		{User: "alice", Project: "p2", Valid: 1, LastIssued: utc(other.IssuedAt)},
		{User: "bob", Project: "proj-c", Expired: 1, LastIssued: utc(records[0].IssuedAt)},
	}
	// Sorted by user, then project in byte order: "p2" < "proj-c".
	want[0], want[1] = want[1], want[0]
	if len(got) != len(want) {
		t.Fatalf("Users = %+v, want %+v", got, want)
	}
	for i := range want {
		got[i].LastIssued = got[i].LastIssued.UTC()
		if got[i] != want[i] {
			t.Fatalf("Users[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	if got, err := d.Users(ctx, "c", now, 1); err != nil || len(got) != 1 {
		t.Fatalf("limit 1: %+v, %v", got, err)
	}
	if got, err := d.Users(ctx, "nope", now, 10); err != nil || len(got) != 0 {
		t.Fatalf("a cluster without certificates: %+v, %v", got, err)
	}
}

func testCRLCache(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	first, another := newStore(t)
	second := another()
	CreateCluster(t, first, "c")
	CreateCluster(t, first, "d")
	cached, rev, err := first.CRL(ctx, "c", 1)
	if err != nil || cached.DER != nil || rev != 0 || cached.Number != 0 {
		t.Fatalf("CRL before any = %+v, %d, %v", cached, rev, err)
	}
	for want := int64(1); want <= 3; want++ {
		db := []Store{first, second}[want%2]
		if n, err := db.NextCRLNumber(ctx, "c"); err != nil || n != want {
			t.Fatalf("NextCRLNumber = %d, %v; want %d", n, err, want)
		}
	}
	if n, err := first.NextCRLNumber(ctx, "d"); err != nil || n != 1 {
		t.Fatalf("another cluster's first number = %d, %v", n, err)
	}
	crl := store.CRL{Cluster: "c", Generation: 1, Number: 2, ThisUpdate: T0, NextUpdate: T0.Add(24 * time.Hour), DER: []byte("crl 2"), Revision: 0}
	if err := first.PutCRL(ctx, crl); err != nil {
		t.Fatal(err)
	}
	older := crl
	older.Number, older.DER = 1, []byte("crl 1")
	if err := second.PutCRL(ctx, older); err != nil {
		t.Fatal(err)
	}
	got, rev, err := second.CRL(ctx, "c", 1)
	if err != nil || got.Number != 2 || string(got.DER) != "crl 2" || !got.ThisUpdate.Equal(T0) || !got.NextUpdate.Equal(crl.NextUpdate) || rev != 0 {
		t.Fatalf("CRL = %+v, %d, %v; want number 2 kept over 1", got, rev, err)
	}
	if err := first.PutCRL(ctx, store.CRL{Cluster: "c", Generation: 9, Number: 5, DER: []byte("x")}); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("a CRL of a missing generation: %v, want ErrNotFound", err)
	}
	// What the CRL lists: generation 1's explicit revocations not expired.
	now := T0.Add(time.Hour)
	for n, u := range map[int]string{1: "alice", 2: "bob", 3: "carol"} {
		if err := first.RecordCertificate(ctx, userCert("c", 1, n, u)); err != nil {
			t.Fatal(err)
		}
	}
	expired := userCert("c", 1, 4, "dave")
	expired.NotAfter = now.Add(-time.Minute)
	if err := first.RecordCertificate(ctx, expired); err != nil {
		t.Fatal(err)
	}
	for _, r := range []store.Revocation{revocation("c", "", "alice", now), revocation("c", Cert("c", 1, 2).Serial, "", now), revocation("c", expired.Serial, "", now)} {
		var err error
		if r.User != "" {
			_, err = first.RevokeUser(ctx, r)
		} else {
			_, err = first.RevokeCertificate(ctx, r)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	entries, err := second.CRLEntries(ctx, "c", 1, now)
	if err != nil || len(entries) != 2 || entries[0].Serial != Cert("c", 1, 1).Serial || entries[1].Serial != Cert("c", 1, 2).Serial ||
		!entries[0].RevokedAt.Equal(now) || entries[0].RevocationReason != store.ReasonKeyCompromise {
		t.Fatalf("CRLEntries = %+v, %v", entries, err)
	}
	if _, rev, _ := second.CRL(ctx, "c", 1); rev != 3 {
		t.Fatalf("revision %d after three revocations, want 3", rev)
	}
	if entries, err := second.CRLEntries(ctx, "c", 2, now); err != nil || len(entries) != 0 {
		t.Fatalf("another generation's entries: %+v, %v", entries, err)
	}
}

// reissueOf returns the re-issue of c under generation gen at now.
func reissueOf(c store.IssuedCertificate, gen, n int, now time.Time) store.IssuedCertificate {
	r := c
	r.Serial, r.Generation, r.IssuedAt, r.Supersedes = fmt.Sprintf("%032x", 10000+n), gen, now, c.Serial
	r.CertificateDER = fmt.Appendf(nil, "der of re-issue %d", n)
	r.RevokedAt, r.RevocationReason, r.SupersededBy = time.Time{}, "", ""
	return r
}

func testReissue(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	CreateCluster(t, d, "c")
	now := T0.Add(time.Hour)
	var certs []store.IssuedCertificate
	for i, u := range []string{"alice", "bob", "carol", "bob"} {
		c := userCert("c", 1, i+1, u)
		if err := d.RecordCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	candidates, err := d.ReissueCandidates(ctx, "c", now)
	if err != nil || len(candidates) != 4 || !bytes.Equal(candidates[0].CertificateDER, certs[0].CertificateDER) {
		t.Fatalf("ReissueCandidates = %+v, %v", candidates, err)
	}
	r := store.Reissue{
		Cluster: "c", Expected: 1, Next: Generation("c", 2), Now: now, TrustedUntil: now.Add(time.Hour),
		Revocation: revocation("c", "", "alice", now),
		Candidates: []string{certs[1].Serial, certs[2].Serial, certs[3].Serial},
		Certificates: []store.IssuedCertificate{
			reissueOf(certs[1], 2, 2, now), reissueOf(certs[3], 2, 4, now),
		},
	}
	res, err := d.Reissue(ctx, r, nil)
	if err != nil || !slices.Equal(res.Revoked, []string{certs[0].Serial}) || len(res.Certificates) != 2 ||
		res.Certificates[0].Serial != r.Certificates[0].Serial || res.Certificates[1].Serial != r.Certificates[1].Serial {
		t.Fatalf("Reissue = %+v, %v", res, err)
	}
	if c, err := d.Cluster(ctx, "c"); err != nil || c.Generation != 2 {
		t.Fatalf("cluster after the reissue: %+v, %v", c, err)
	}
	for i, want := range map[int]string{1: r.Certificates[0].Serial, 2: "", 3: r.Certificates[1].Serial} {
		got, err := d.Certificate(ctx, "c", certs[i].Serial)
		if err != nil || got.SupersededBy != want || !got.RevokedAt.Equal(r.TrustedUntil) {
			t.Fatalf("old certificate %d: %+v, %v; want superseded by %q, revoked at the end of the grace", i, got, err, want)
		}
	}
	got, err := d.Certificate(ctx, "c", r.Certificates[0].Serial)
	if err != nil || got.Generation != 2 || got.User != "bob" || !got.RevokedAt.IsZero() || got.SupersededBy != "" ||
		!bytes.Equal(got.CertificateDER, r.Certificates[0].CertificateDER) {
		t.Fatalf("re-issued certificate: %+v, %v", got, err)
	}
	if got, _ := d.Certificate(ctx, "c", certs[0].Serial); got.RevocationReason != store.ReasonKeyCompromise || !got.RevokedAt.Equal(now) {
		t.Fatalf("the revoked user's certificate: %+v", got)
	}
	if err := d.RecordCertificate(ctx, userCert("c", 2, 50, "alice")); !errors.Is(err, api.ErrUserRevoked) {
		t.Fatalf("alice signs after the reissue: %v", err)
	}
	defer func() {
		// Revoking either end of a reissue chain revokes the whole chain:
		// the same key.
		for _, c := range []struct{ revoke, other string }{
			{certs[1].Serial, r.Certificates[0].Serial},
			{r.Certificates[1].Serial, certs[3].Serial},
		} {
			serials, err := d.RevokeCertificate(ctx, revocation("c", c.revoke, "", now.Add(2*time.Minute)))
			want := []string{c.revoke, c.other}
			slices.Sort(want)
			if err != nil || !slices.Equal(serials, want) {
				t.Fatalf("revoking %s = %v, %v; want %v", c.revoke, serials, err, want)
			}
			if got, _ := d.Certificate(ctx, "c", c.other); got.RevocationReason == "" {
				t.Fatalf("revoking %s left %s unrevoked", c.revoke, c.other)
			}
		}
	}()
	// Within the grace, the candidates are the new certificates and the
	// old ones not superseded (carol's, which had no re-issue here).
	candidates, err = d.ReissueCandidates(ctx, "c", now.Add(time.Minute))
	var serials []string
	for _, c := range candidates {
		serials = append(serials, c.Serial)
	}
	want := []string{certs[2].Serial, r.Certificates[0].Serial, r.Certificates[1].Serial}
	slices.Sort(want)
	if err != nil || !slices.Equal(serials, want) {
		t.Fatalf("candidates after the reissue = %v, %v; want %v", serials, err, want)
	}
}

func testReissueRefusals(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	CreateCluster(t, d, "c")
	now := T0.Add(time.Hour)
	a, b := userCert("c", 1, 1, "alice"), userCert("c", 1, 2, "bob")
	for _, c := range []store.IssuedCertificate{a, b} {
		if err := d.RecordCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	base := store.Reissue{
		Cluster: "c", Expected: 1, Next: Generation("c", 2), Now: now, TrustedUntil: now,
		Revocation:   revocation("c", a.Serial, "", now),
		Candidates:   []string{b.Serial},
		Certificates: []store.IssuedCertificate{reissueOf(b, 2, 2, now)},
	}
	// b was recorded after the candidates were read (none).
	unread := func(r *store.Reissue) { r.Candidates = nil; r.Certificates = nil }
	tests := []struct {
		name   string
		edit   func(r *store.Reissue)
		resign store.ResignFunc
		want   error
	}{
		{"a candidate recorded meanwhile, no ResignFunc", unread, nil, store.ErrCandidatesChanged},
		{"another candidate", func(r *store.Reissue) {
			r.Candidates = []string{a.Serial}
			r.Certificates = []store.IssuedCertificate{reissueOf(a, 2, 2, now)}
		}, nil, store.ErrCandidatesChanged},
		{"a ResignFunc that refuses", unread, func(context.Context, []store.IssuedCertificate) ([]store.IssuedCertificate, error) {
			return nil, fmt.Errorf("too many: %w: %w", store.ErrCandidatesChanged, api.ErrConflict)
		}, store.ErrCandidatesChanged},
		{"a ResignFunc that re-issues another certificate", unread, func(context.Context, []store.IssuedCertificate) ([]store.IssuedCertificate, error) {
			return []store.IssuedCertificate{reissueOf(a, 2, 2, now)}, nil
		}, nil},
		{"a ResignFunc that re-issues one twice", unread, func(_ context.Context, certs []store.IssuedCertificate) ([]store.IssuedCertificate, error) {
			return []store.IssuedCertificate{reissueOf(certs[0], 2, 2, now), reissueOf(certs[0], 2, 3, now)}, nil
		}, nil},
		{"a ResignFunc that signs under the old generation", unread, func(_ context.Context, certs []store.IssuedCertificate) ([]store.IssuedCertificate, error) {
			return []store.IssuedCertificate{reissueOf(certs[0], 1, 2, now)}, nil
		}, nil},
		{"a stale generation", func(r *store.Reissue) {
			r.Expected, r.Next = 2, Generation("c", 3)
			r.Certificates = []store.IssuedCertificate{reissueOf(b, 3, 2, now)}
		}, nil, api.ErrGenerationMismatch},
		{"an unknown serial", func(r *store.Reissue) { r.Revocation.Serial = "ff" }, nil, api.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			tt.edit(&r)
			_, err := d.Reissue(ctx, r, tt.resign)
			if tt.want == nil {
				// A ResignFunc's wrong answer: refused, nothing written.
				if err == nil {
					t.Fatal("Reissue accepted it")
				}
			} else if !errors.Is(err, tt.want) || !store.NotWritten(err) {
				t.Fatalf("Reissue = %v, want %v (and nothing written)", err, tt.want)
			}
			if c, _ := d.Cluster(ctx, "c"); c.Generation != 1 {
				t.Fatalf("the failed reissue moved the generation to %d", c.Generation)
			}
			if got, _ := d.Certificate(ctx, "c", a.Serial); got.RevocationReason != "" {
				t.Fatalf("the failed reissue revoked %s", a.Serial)
			}
		})
	}
	if _, err := d.Reissue(ctx, base, nil); err != nil {
		t.Fatalf("the reissue after the refusals: %v", err)
	}
}

// testReissueMeanwhile reissues with candidates read before a certificate
// was revoked and two were recorded: the revoked one's re-issue is
// dropped, the two recorded are signed by the ResignFunc inside the
// transaction, and the answer lists what was written.
func testReissueMeanwhile(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	CreateCluster(t, d, "c")
	now := T0.Add(time.Hour)
	alice, bob, carol := userCert("c", 1, 1, "alice"), userCert("c", 1, 2, "bob"), userCert("c", 1, 3, "carol")
	for _, c := range []store.IssuedCertificate{alice, bob, carol} {
		if err := d.RecordCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	r := store.Reissue{
		Cluster: "c", Expected: 1, Next: Generation("c", 2), Now: now, TrustedUntil: now.Add(time.Hour),
		Revocation:   revocation("c", "", "alice", now),
		Candidates:   []string{bob.Serial, carol.Serial},
		Certificates: []store.IssuedCertificate{reissueOf(bob, 2, 2, now), reissueOf(carol, 2, 3, now)},
	}
	// Meanwhile carol's certificate is revoked, dave signs twice and
	// alice once (hers is revoked by the reissue, never re-issued).
	if _, err := d.RevokeCertificate(ctx, revocation("c", carol.Serial, "", now)); err != nil {
		t.Fatal(err)
	}
	dave := []store.IssuedCertificate{userCert("c", 1, 5, "dave"), userCert("c", 1, 4, "dave")}
	for _, c := range append(slices.Clone(dave), userCert("c", 1, 6, "alice")) {
		if err := d.RecordCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	var asked []store.IssuedCertificate
	res, err := d.Reissue(ctx, r, func(_ context.Context, certs []store.IssuedCertificate) ([]store.IssuedCertificate, error) {
		asked = certs
		var out []store.IssuedCertificate
		for i, c := range certs {
			out = append(out, reissueOf(c, 2, 10+i, now))
		}
		return out, nil
	})
	if err != nil {
		t.Fatalf("Reissue: %v", err)
	}
	if len(asked) != 2 || asked[0].Serial != dave[1].Serial || asked[1].Serial != dave[0].Serial ||
		!bytes.Equal(asked[0].CertificateDER, dave[1].CertificateDER) || asked[0].User != "dave" {
		t.Fatalf("the ResignFunc was given %+v, want dave's two certificates by serial, with their DER", asked)
	}
	var got []string
	for _, c := range res.Certificates {
		got = append(got, c.Supersedes)
	}
	if want := []string{bob.Serial, dave[1].Serial, dave[0].Serial}; !slices.Equal(got, want) ||
		!slices.Equal(res.Revoked, []string{alice.Serial, userCert("c", 1, 6, "alice").Serial}) {
		t.Fatalf("Reissue = re-issued %v, revoked %v; want re-issued %v and alice's two revoked", got, res.Revoked, want)
	}
	for _, c := range []store.IssuedCertificate{bob, dave[0], dave[1]} {
		if old, err := d.Certificate(ctx, "c", c.Serial); err != nil || old.SupersededBy == "" {
			t.Fatalf("%s was not re-issued: %+v, %v", c.Serial, old, err)
		}
	}
	if old, err := d.Certificate(ctx, "c", carol.Serial); err != nil || old.SupersededBy != "" || old.RevocationReason == "" {
		t.Fatalf("carol's certificate, revoked meanwhile, was re-issued: %+v, %v", old, err)
	}
	if _, err := d.Certificate(ctx, "c", r.Certificates[1].Serial); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("the re-issue of carol's revoked certificate was written: %v", err)
	}
}

// testReissueRacingRecords records certificates back to back, each followed by a read of the cluster's generation (as a sign
// checks that no rekey committed while it signed), while a reissue runs
// with candidates read before some of them: the reissue succeeds, and
// every certificate recorded while the generation was still the old one
// is re-issued; the others are revoked with the old generation at the end
// of its grace.
func testReissueRacingRecords(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	// The recorder shares the reissue's handle, as the signs of one
	// instance do: on SQLite, another handle hammering the write lock
	// back to back can starve BEGIN IMMEDIATE past the busy timeout (its
	// busy handler polls), whatever the transaction.
	d, _ := newStore(t)
	recorder := d
	CreateCluster(t, d, "c")
	now := T0.Add(time.Hour)
	var (
		mu       sync.Mutex
		before   []string // recorded, and the generation still 1 afterwards
		recorded atomic.Int64
		stop     = make(chan struct{})
		errs     = make(chan error, 1)
		wg       sync.WaitGroup
	)
	wg.Go(func() {
		for n := 1000; n < 20000; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := recorder.RecordCertificate(ctx, userCert("c", 1, n, "bob")); err != nil {
				errs <- err
				return
			}
			c, err := recorder.Cluster(ctx, "c")
			if err != nil {
				errs <- err
				return
			}
			if c.Generation == 1 {
				mu.Lock()
				before = append(before, fmt.Sprintf("%032x", n))
				mu.Unlock()
			}
			recorded.Add(1)
		}
	})
	waitFor := func(n int64) {
		t.Helper()
		for recorded.Load() < n {
			select {
			case err := <-errs:
				t.Fatal(err)
			case <-time.After(time.Millisecond):
			}
		}
	}
	waitFor(20)
	// A revocation by serial, which takes no lock of its own.
	first := fmt.Sprintf("%032x", 1000)
	cands, err := d.ReissueCandidates(ctx, "c", now)
	if err != nil {
		t.Fatal(err)
	}
	r := store.Reissue{
		Cluster: "c", Expected: 1, Next: Generation("c", 2), Now: now, TrustedUntil: now.Add(time.Hour),
		Revocation: revocation("c", first, "", now),
	}
	for i, c := range cands {
		if c.Serial == first {
			continue
		}
		r.Candidates = append(r.Candidates, c.Serial)
		r.Certificates = append(r.Certificates, reissueOf(c, 2, 100000+i, now))
	}
	// Let more be recorded after the read, then reissue while the
	// recorder goes on.
	waitFor(int64(len(cands)) + 5)
	var signed atomic.Int64
	res, err := d.Reissue(ctx, r, func(_ context.Context, certs []store.IssuedCertificate) ([]store.IssuedCertificate, error) {
		// Signing takes a while (an HSM): the records must wait for the
		// commit, not slip in between the store's read and its writes.
		time.Sleep(20 * time.Millisecond)
		var out []store.IssuedCertificate
		for _, c := range certs {
			out = append(out, reissueOf(c, 2, 200000+int(signed.Add(1)), now))
		}
		return out, nil
	})
	after := recorded.Load()
	waitFor(after + 5) // and some after the commit
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if err != nil {
		t.Fatalf("Reissue while certificates are recorded back to back: %v", err)
	}
	if signed.Load() == 0 {
		t.Fatal("the ResignFunc signed nothing, though certificates were recorded after the candidates were read")
	}
	reissued := map[string]bool{}
	for _, c := range res.Certificates {
		reissued[c.Supersedes] = true
	}
	for _, serial := range before[1:] {
		got, err := d.Certificate(ctx, "c", serial)
		if err != nil || got.SupersededBy == "" || !reissued[serial] {
			t.Fatalf("%s was recorded before the reissue committed but not re-issued: %+v, %v", serial, got, err)
		}
	}
	certs, err := d.Certificates(ctx, store.CertificateQuery{Cluster: "c", Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	old := 0
	for _, c := range certs {
		if c.Generation != 1 {
			continue
		}
		old++
		if c.RevokedAt.IsZero() || c.RevokedAt.After(r.TrustedUntil) {
			t.Fatalf("%s of the old generation is left valid after its grace: %+v", c.Serial, c)
		}
	}
	t.Logf("%d certificates recorded, %d before the commit (%d of them signed inside the transaction), %d of the old generation in all",
		recorded.Load(), len(before), signed.Load(), old)
}
