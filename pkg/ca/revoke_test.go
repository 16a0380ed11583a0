package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

var bob = auth.Principal{User: "bob", Project: "p1", Roles: []string{auth.RoleMember}}

// newClusterFixture returns a fixture (newFixture's defaults) with cluster
// c1, created by member.
func newClusterFixture(t testing.TB) *fixture {
	t.Helper()
	f := newFixture(t, Options{})
	if _, _, err := f.a.CreateCA(as(member), "c1", CreateRequest{}); err != nil {
		t.Fatal(err)
	}
	return f
}

// signAs signs a client certificate for p with a fresh key, named after p.
func (f *fixture) signAs(t testing.TB, p auth.Principal) (SignResult, crypto.Signer) {
	t.Helper()
	key := p256Key(t)
	res, err := f.a.Sign(as(p), "c1", SignRequest{CSR: makeCSR(t, csrOptions{key: key, cn: p.User})})
	if err != nil {
		t.Fatalf("sign as %s: %v", p.User, err)
	}
	return res, key
}

func TestRevokeAuthorization(t *testing.T) {
	f := newClusterFixture(t)
	own, _ := f.signAs(t, member)
	bobs, _ := f.signAs(t, bob)
	routes := Routes(f.a)
	grace := int64(10)
	tests := []struct {
		name       string
		p          *auth.Principal
		cluster    string
		body       any
		wantStatus int
		wantCode   string
	}{
		{"a reader may not revoke", &reader, "c1", RevokeRequest{Serial: own.Serial, Reason: "keyCompromise"}, 403, api.CodeForbidden},
		{"a member may not revoke another user's certificate", &member, "c1", RevokeRequest{Serial: bobs.Serial, Reason: "keyCompromise"}, 403, api.CodeForbidden},
		{"a member may not revoke a user", &member, "c1", RevokeRequest{User: "bob", Reason: "affiliationChanged"}, 403, api.CodeForbidden},
		{"a member may not reissue", &member, "c1", RevokeRequest{Serial: own.Serial, Reason: "keyCompromise", Reissue: true}, 403, api.CodeForbidden},
		{"another project's member may not revoke", &otherMember, "c1", RevokeRequest{Serial: own.Serial, Reason: "keyCompromise"}, 403, api.CodeForbidden},
		{"an unknown serial", &admin, "c1", RevokeRequest{Serial: "ab:CD", Reason: "keyCompromise"}, 404, api.CodeNotFound},
		{"an unknown cluster", &admin, "nope", RevokeRequest{Serial: own.Serial, Reason: "keyCompromise"}, 404, api.CodeCANotFound},
		{"an unknown reason", &admin, "c1", RevokeRequest{Serial: own.Serial, Reason: "because"}, 400, api.CodeInvalidField},
		{"no reason", &admin, "c1", RevokeRequest{Serial: own.Serial}, 400, api.CodeInvalidField},
		{"both a serial and a user", &admin, "c1", RevokeRequest{Serial: own.Serial, User: "bob", Reason: "keyCompromise"}, 400, api.CodeInvalidField},
		{"neither", &admin, "c1", RevokeRequest{Reason: "keyCompromise"}, 400, api.CodeInvalidField},
		{"a grace without reissue", &admin, "c1", RevokeRequest{User: "bob", Reason: "keyCompromise", GracePeriodSeconds: &grace}, 400, api.CodeInvalidField},
		{"an unknown field", &admin, "c1", map[string]any{"serial": own.Serial, "reason": "keyCompromise", "why": "x"}, 400, api.CodeUnknownField},
		// The route's limit (MaxBody, 4 KiB, as README says): a body over
		// it is refused before it is decoded.
		{"a body over 4 KiB", &admin, "c1", map[string]any{"serial": own.Serial, "reason": "keyCompromise", "user": strings.Repeat("u", 4<<10)}, 413, api.CodeBodyTooLarge},
		{"a member revokes its own certificate, colons and case as it likes", &member, "c1", RevokeRequest{Serial: colons(strings.ToUpper(own.Serial)), Reason: "keyCompromise"}, 200, ""},
		{"again: idempotent", &member, "c1", RevokeRequest{Serial: own.Serial, Reason: "superseded"}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := json.Marshal(tt.body)
			rec := serve(t, routes, tt.p, "POST", "/v1/clusters/"+tt.cluster+"/revocations", "application/json", string(b), nil)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantCode != "" {
				if m := decodeMap(t, rec); m["code"] != tt.wantCode {
					t.Fatalf("code %v, want %s: %s", m["code"], tt.wantCode, rec.Body)
				}
				return
			}
			var res RevokeResult
			if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || !slices.Equal(res.Revoked, []string{own.Serial}) ||
				res.CRLNumber < 1 || res.CAGeneration != 1 || res.Reissued != nil {
				t.Fatalf("answer %s (%v)", rec.Body, err)
			}
		})
	}
	got, err := f.a.Certificate(as(reader), "c1", own.Serial)
	if err != nil || got.RevocationReason != store.ReasonKeyCompromise || got.Status != store.StatusRevoked {
		t.Fatalf("the revoked certificate: %+v, %v; want the first reason kept", got, err)
	}
	if got, err := f.a.Certificate(as(reader), "c1", bobs.Serial); err != nil || got.Status != store.StatusValid || got.RevocationReason != "" {
		t.Fatalf("bob's certificate: %+v, %v", got, err)
	}
}

// colons writes hex s as colon-separated pairs.
func colons(s string) string {
	var parts []string
	for i := 0; i < len(s); i += 2 {
		parts = append(parts, s[i:min(i+2, len(s))])
	}
	return strings.Join(parts, ":")
}

func TestRevokedUserSignsAreRefusedUntilLifted(t *testing.T) {
	f := newClusterFixture(t)
	routes := Routes(f.a)
	first, _ := f.signAs(t, member)
	f.clock.Advance(time.Minute)
	second, _ := f.signAs(t, member)
	f.signAs(t, bob)
	res, err := f.a.Revoke(as(admin), "c1", RevokeRequest{User: "alice", Reason: store.ReasonAffiliationChanged})
	want := []string{first.Serial, second.Serial}
	slices.Sort(want)
	if err != nil || !slices.Equal(res.Revoked, want) || res.User != "alice" {
		t.Fatalf("Revoke = %+v, %v; want %v", res, err, want)
	}
	_, err = f.a.Sign(as(member), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice"})})
	if status, code := codeOf(err); status != http.StatusForbidden || code != api.CodeUserRevoked {
		t.Fatalf("alice signs after her revocation: %d %s (%v), want 403 user_revoked", status, code, err)
	}
	f.signAs(t, bob)

	rec := serve(t, routes, &reader, "GET", "/v1/clusters/c1/users", "", "", nil)
	var users UserList
	if err := json.Unmarshal(rec.Body.Bytes(), &users); rec.Code != 200 || err != nil {
		t.Fatalf("users: %d %s", rec.Code, rec.Body)
	}
	if len(users.Users) != 2 || users.Truncated ||
		users.Users[0].User != "alice" || !users.Users[0].UserRevoked || users.Users[0].Revoked != 2 || users.Users[0].Valid != 0 ||
		users.Users[1].User != "bob" || users.Users[1].UserRevoked || users.Users[1].Valid != 2 || users.Users[1].LastIssued == nil {
		t.Fatalf("users: %s", rec.Body)
	}

	for _, tt := range []struct {
		name string
		p    *auth.Principal
		user string
		want int
	}{
		{"a member may not lift", &member, "alice", 403},
		{"a user that is not revoked", &admin, "bob", 404},
		{"the admin lifts", &admin, "alice", 204},
		{"twice", &admin, "alice", 404},
	} {
		rec := serve(t, routes, tt.p, "DELETE", "/v1/clusters/c1/revocations/users/"+tt.user, "", "", nil)
		if rec.Code != tt.want {
			t.Fatalf("%s: %d %s, want %d", tt.name, rec.Code, rec.Body, tt.want)
		}
	}
	f.signAs(t, member)
	if got, _ := f.a.Certificate(as(member), "c1", first.Serial); got.Status != store.StatusRevoked {
		t.Fatalf("the lift un-revoked %s: %+v", first.Serial, got)
	}
}

// getCRL fetches the CRL of generation gen (0: the active one) and checks
// it against the CA certificate ca.
func getCRL(t *testing.T, routes []api.Route, p *auth.Principal, gen int, ca *x509.Certificate) *x509.RevocationList {
	t.Helper()
	target := "/v1/clusters/c1/crl"
	if gen != 0 {
		target += fmt.Sprintf("?generation=%d", gen)
	}
	rec := serve(t, routes, p, "GET", target, "", "", nil)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != ContentTypeCRL {
		t.Fatalf("GET %s: %d %s %s", target, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	crl, err := x509.ParseRevocationList(rec.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("the CRL does not verify under generation %d's CA: %v", gen, err)
	}
	return crl
}

func crlSerials(crl *x509.RevocationList) []string {
	var out []string
	for _, e := range crl.RevokedCertificateEntries {
		out = append(out, fmt.Sprintf("%x", e.SerialNumber))
	}
	slices.Sort(out)
	return out
}

func TestCRLListsExplicitRevocations(t *testing.T) {
	f := newClusterFixture(t)
	routes := Routes(f.a)
	caRes, err := f.a.CA(as(member), "c1")
	if err != nil {
		t.Fatal(err)
	}
	ca := parseCertPEM(t, caRes.Certificate)
	empty := getCRL(t, routes, &reader, 0, ca)
	if len(empty.RevokedCertificateEntries) != 0 || empty.Number.Sign() <= 0 ||
		!empty.NextUpdate.Equal(empty.ThisUpdate.Add(CRLValidity)) || !empty.ThisUpdate.Equal(testStart) {
		t.Fatalf("first CRL: number %v, %d entries, %v to %v", empty.Number, len(empty.RevokedCertificateEntries), empty.ThisUpdate, empty.NextUpdate)
	}
	if again := getCRL(t, routes, &reader, 0, ca); again.Number.Cmp(empty.Number) != 0 {
		t.Fatalf("a CRL read twice without a revocation was rebuilt: %v then %v", empty.Number, again.Number)
	}
	revoked, _ := f.signAs(t, member)
	kept, _ := f.signAs(t, bob)
	res, err := f.a.Revoke(as(member), "c1", RevokeRequest{Serial: revoked.Serial, Reason: store.ReasonKeyCompromise})
	if err != nil {
		t.Fatal(err)
	}
	crl := getCRL(t, routes, &reader, 1, ca)
	if crl.Number.Cmp(big.NewInt(res.CRLNumber)) != 0 || crl.Number.Cmp(empty.Number) <= 0 {
		t.Fatalf("CRL number %v after the revocation answered %d, first %v", crl.Number, res.CRLNumber, empty.Number)
	}
	if got := crlSerials(crl); !slices.Equal(got, []string{strings.TrimLeft(revoked.Serial, "0")}) ||
		crl.RevokedCertificateEntries[0].ReasonCode != 1 {
		t.Fatalf("CRL lists %v (%+v), want only %s with keyCompromise", got, crl.RevokedCertificateEntries, revoked.Serial)
	}
	_ = kept
	// Half the validity later, the CRL is rebuilt with a higher number.
	f.clock.Advance(CRLValidity/2 + time.Second)
	if later := getCRL(t, routes, &reader, 0, ca); later.Number.Cmp(crl.Number) <= 0 || len(later.RevokedCertificateEntries) != 1 {
		t.Fatalf("CRL after half its validity: number %v, was %v", later.Number, crl.Number)
	}
	rec := serve(t, routes, &reader, "GET", "/v1/clusters/c1/crl", "", "", http.Header{"Accept": {ContentTypePEM}})
	if b, _ := pem.Decode(rec.Body.Bytes()); rec.Code != 200 || rec.Header().Get("Content-Type") != ContentTypePEM || b == nil || b.Type != "X509 CRL" {
		t.Fatalf("PEM CRL: %d %s %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	for _, tt := range []struct {
		target string
		p      *auth.Principal
		want   int
	}{
		{"/v1/clusters/c1/crl?generation=2", &reader, 404},
		{"/v1/clusters/c1/crl?generation=0", &reader, 400},
		{"/v1/clusters/c1/crl?gen=1", &reader, 400},
		{"/v1/clusters/c1/crl", &otherMember, 403},
		{"/v1/clusters/nope/crl", &admin, 404},
	} {
		if rec := serve(t, routes, tt.p, "GET", tt.target, "", "", nil); rec.Code != tt.want {
			t.Errorf("GET %s: %d %s, want %d", tt.target, rec.Code, rec.Body, tt.want)
		}
	}
}

func TestReissueRevokesOneUserAndResignsTheOthers(t *testing.T) {
	for _, grace := range []int64{0, 3600} {
		t.Run(fmt.Sprintf("grace %d s", grace), func(t *testing.T) {
			f := newClusterFixture(t)
			routes := Routes(f.a)
			old, err := f.a.CA(as(member), "c1")
			if err != nil {
				t.Fatal(err)
			}
			oldCA := parseCertPEM(t, old.Certificate)
			alices, _ := f.signAs(t, member)
			bobs, bobKey := f.signAs(t, bob)
			server, err := f.a.Sign(as(bob), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "web", dns: []string{"web.example"}}), Profile: "server"})
			if err != nil {
				t.Fatal(err)
			}
			// An entry recorded before the registry kept certificates.
			legacy := store.IssuedCertificate{Cluster: "c1", Serial: "0abc", Generation: 1, Subject: "CN=carol", Profile: "client",
				User: "carol", Project: "p1", NotBefore: testStart, NotAfter: testStart.Add(time.Hour), IssuedAt: testStart}
			if err := f.st.RecordCertificate(context.Background(), legacy); err != nil {
				t.Fatal(err)
			}
			f.clock.Advance(time.Minute)
			body := fmt.Sprintf(`{"user":"alice","reason":"affiliationChanged","reissue":true,"grace_period_seconds":%d}`, grace)
			rec := serve(t, routes, &admin, "POST", "/v1/clusters/c1/revocations", "application/json", body, nil)
			var res RevokeResult
			if err := json.Unmarshal(rec.Body.Bytes(), &res); rec.Code != 200 || err != nil {
				t.Fatalf("reissue: %d %s", rec.Code, rec.Body)
			}
			if !slices.Equal(res.Revoked, []string{alices.Serial}) || res.CAGeneration != 2 || res.Reissued == nil ||
				len(*res.Reissued) != 2 || !slices.Equal(res.NotReissued, []string{legacy.Serial}) {
				t.Fatalf("reissue answered %s", rec.Body)
			}
			now, err := f.a.CA(as(member), "c1")
			if err != nil {
				t.Fatal(err)
			}
			newCA := parseCertPEM(t, now.Certificate)
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM([]byte(now.TrustBundle))

			// Bob fetches his new certificate by his old serial: same key,
			// same subject, signed by the new CA, the same NotAfter.
			got, err := f.a.Certificate(as(bob), "c1", bobs.Serial)
			if err != nil || got.SupersededBy == "" || got.Certificate == "" {
				t.Fatalf("bob's old serial: %+v, %v", got, err)
			}
			nc := parseCertPEM(t, got.Certificate)
			oc := parseCertPEM(t, bobs.Certificate)
			if !nc.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(bobKey.Public()) ||
				nc.Subject.String() != oc.Subject.String() || !nc.NotAfter.Equal(oc.NotAfter) ||
				!slices.Equal(nc.ExtKeyUsage, oc.ExtKeyUsage) || nc.CheckSignatureFrom(newCA) != nil {
				t.Fatalf("bob's re-issued certificate: %v / %v / %v", nc.Subject, nc.NotAfter, nc.CheckSignatureFrom(newCA))
			}
			if _, err := nc.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: f.clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatalf("bob's new certificate does not verify against the new bundle: %v", err)
			}
			srv, err := f.a.Certificate(as(member), "c1", server.Serial)
			if err != nil || srv.SupersededBy == "" || !slices.Equal(parseCertPEM(t, srv.Certificate).DNSNames, []string{"web.example"}) {
				t.Fatalf("the server certificate: %+v, %v", srv, err)
			}
			// Alice's certificate is revoked, verifies only during the grace,
			// and she cannot sign again.
			ac := parseCertPEM(t, alices.Certificate)
			_, verr := ac.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: f.clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			if (grace == 0) != (verr != nil) {
				t.Fatalf("alice's certificate against the bundle with grace %d: %v", grace, verr)
			}
			if _, err := f.a.Sign(as(member), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice"})}); !errors.Is(err, api.ErrUserRevoked) {
				t.Fatalf("alice signs after the reissue: %v", err)
			}
			if got, _ := f.a.Certificate(as(admin), "c1", alices.Serial); got.SupersededBy != "" || got.RevocationReason != store.ReasonAffiliationChanged {
				t.Fatalf("alice's certificate: %+v", got)
			}
			if grace > 0 {
				// The retired CA's key is gone; its last CRL lists alice.
				crl := getCRL(t, routes, &reader, 1, oldCA)
				if !slices.Contains(crlSerials(crl), strings.TrimLeft(alices.Serial, "0")) || crl.NextUpdate.Before(f.clock.Now().Add(time.Duration(grace)*time.Second-time.Minute)) {
					t.Fatalf("generation 1's CRL: %v until %v", crlSerials(crl), crl.NextUpdate)
				}
			} else if rec := serve(t, routes, &reader, "GET", "/v1/clusters/c1/crl?generation=1", "", "", nil); rec.Code != 404 {
				t.Fatalf("generation 1 out of the bundle: CRL %d", rec.Code)
			}
			getCRL(t, routes, &reader, 2, newCA)
			// A second reissue starts from the new certificates only.
			res2, err := f.a.Revoke(as(admin), "c1", RevokeRequest{Serial: server.Serial, Reason: store.ReasonSuperseded, Reissue: true})
			if err != nil || res2.CAGeneration != 3 || len(*res2.Reissued) != 1 || len(res2.Revoked) != 2 {
				t.Fatalf("second reissue: %+v, %v", res2, err)
			}
			third, err := f.a.Certificate(as(bob), "c1", bobs.Serial)
			if err != nil || third.SupersededBy != (*res2.Reissued)[0].SupersededBy {
				t.Fatalf("bob's old serial after two reissues: %+v, %v; want the newest", third, err)
			}
		})
	}
}

func TestReissueLosingTheGenerationRaceDestroysItsKey(t *testing.T) {
	f := newClusterFixture(t)
	alices, _ := f.signAs(t, member)
	f.signAs(t, bob)
	ctx := context.Background()
	c, _, err := f.st.ActiveCA(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	// Another instance rekeyed after this one read the cluster.
	if _, err := f.a.Rekey(as(admin), "c1", RekeyRequest{}); err != nil {
		t.Fatal(err)
	}
	refs, err := f.st.ListBlobs(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	r := store.Revocation{Cluster: "c1", User: "alice", Reason: store.ReasonKeyCompromise, By: "root"}
	_, err = f.a.reissue(as(admin), admin, c, r, nil, 0)
	if status, code := codeOf(err); status != 409 || code != api.CodeGenerationMismatch {
		t.Fatalf("reissue from a stale generation: %d %s (%v)", status, code, err)
	}
	after, err := f.st.ListBlobs(ctx, "")
	if err != nil || len(after) != len(refs) {
		t.Fatalf("custody holds %d blobs after the lost race, %d before (%v): the new key was left behind", len(after), len(refs), err)
	}
	got, err := f.st.Certificate(ctx, "c1", alices.Serial)
	if err != nil || got.RevocationReason != "" {
		t.Fatalf("the lost reissue revoked alice's certificate: %+v, %v", got, err)
	}
	if _, err := f.a.Sign(as(member), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice"})}); err != nil {
		t.Fatalf("the lost reissue revoked alice: %v", err)
	}
}

// signingMeanwhile is the SQLite store with a sign slipped in after each of
// the first reads of the certificates to re-issue, as a cluster whose
// kubelets and CI keep signing while an admin reissues.
type signingMeanwhile struct {
	*sqlite.DB
	times int
	sign  func()
}

func (s *signingMeanwhile) ReissueCandidates(ctx context.Context, cluster string, now time.Time) ([]store.IssuedCertificate, error) {
	cands, err := s.DB.ReissueCandidates(ctx, cluster, now)
	if s.times > 0 {
		s.times--
		s.sign()
	}
	return cands, err
}

func TestReissueWhileOthersKeepSigning(t *testing.T) {
	f := newClusterFixture(t)
	f.signAs(t, member)
	f.signAs(t, bob)
	st := &signingMeanwhile{DB: f.st, times: maxReissueAttempts - 1}
	a := f.with(st, f.keys)
	var during []string
	st.sign = func() {
		res, err := a.Sign(as(bob), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "bob"})})
		if err != nil {
			t.Errorf("a sign during the reissue: %v", err)
			return
		}
		during = append(during, res.Serial)
	}
	res, err := a.Revoke(as(admin), "c1", RevokeRequest{User: "alice", Reason: store.ReasonAffiliationChanged, Reissue: true})
	if err != nil {
		t.Fatalf("a reissue while %d signs land: %v", maxReissueAttempts-1, err)
	}
	var replaced []string
	for _, r := range *res.Reissued {
		replaced = append(replaced, r.Serial)
	}
	for _, s := range during {
		if !slices.Contains(replaced, s) {
			t.Fatalf("%s, signed during the reissue, was not re-issued (re-issued %v)", s, replaced)
		}
	}
	if len(replaced) != 1+len(during) {
		t.Fatalf("re-issued %d certificates, want bob's %d", len(replaced), 1+len(during))
	}
	refs, err := f.st.ListBlobs(context.Background(), "")
	if err != nil || len(refs) != 1 {
		t.Fatalf("custody holds %d keys after the reissue, want the new CA's alone (%v)", len(refs), err)
	}
}

// TestNewRoutesAuthorization checks who may call each route of issue 12
// besides POST revocations (TestRevokeAuthorization): readers of the
// cluster's project and admins read; another project's member, and a
// request without a principal, never do; only an admin lifts.
func TestNewRoutesAuthorization(t *testing.T) {
	f := newClusterFixture(t)
	own, _ := f.signAs(t, member)
	if _, err := f.a.Revoke(as(admin), "c1", RevokeRequest{User: "bob", Reason: "affiliationChanged"}); err != nil {
		t.Fatal(err)
	}
	routes := Routes(f.a)
	reads := []string{"/v1/clusters/c1/users", "/v1/clusters/c1/crl", "/v1/clusters/c1/certificates/" + own.Serial, "/v1/clusters/c1/policy"}
	type call struct {
		name       string
		p          *auth.Principal
		method     string
		path       string
		wantStatus int
	}
	var calls []call
	for _, path := range reads {
		calls = append(calls,
			call{"a reader reads " + path, &reader, "GET", path, 200},
			call{"an admin reads " + path, &admin, "GET", path, 200},
			call{"another project's member may not read " + path, &otherMember, "GET", path, 403},
			call{"no principal may read " + path, nil, "GET", path, 401},
		)
	}
	lift := "/v1/clusters/c1/revocations/users/bob"
	calls = append(calls,
		call{"a reader may not lift", &reader, "DELETE", lift, 403},
		call{"a member may not lift", &member, "DELETE", lift, 403},
		call{"another project's member may not lift", &otherMember, "DELETE", lift, 403},
		call{"an admin lifts", &admin, "DELETE", lift, 204},
		call{"lifting again finds nothing", &admin, "DELETE", lift, 404},
	)
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			if rec := serve(t, routes, tt.p, tt.method, tt.path, "", "", nil); rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
		})
	}
}
