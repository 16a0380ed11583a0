package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

func TestCreateCA(t *testing.T) {
	tests := []struct {
		name        string
		who         auth.Principal
		cluster     string
		first       *CreateRequest // created before, as member
		req         CreateRequest
		wantStatus  int
		wantCode    string
		wantCreated bool
		wantProject string
	}{
		{name: "a member creates a CA in its project", who: member, cluster: "c1", wantCreated: true, wantProject: "p1"},
		{name: "a Magnum cluster UUID is a valid name", who: member, cluster: "7ae81bb3-dec3-4289-8d6c-da80bd8001ae", wantCreated: true, wantProject: "p1"},
		{name: "the same request again returns the CA", who: member, cluster: "c1", first: &CreateRequest{}, req: CreateRequest{}, wantProject: "p1"},
		{name: "the same explicit parameters again return the CA", who: member, cluster: "c1",
			first: &CreateRequest{KeyAlgorithm: "ecdsa-p384", ValidityDays: 30},
			req:   CreateRequest{KeyAlgorithm: "ecdsa-p384", ValidityDays: 30, ProjectID: "p1"}, wantProject: "p1"},
		{name: "other parameters are a conflict", who: member, cluster: "c1", first: &CreateRequest{},
			req: CreateRequest{KeyAlgorithm: "rsa-2048"}, wantStatus: 409, wantCode: api.CodeCAExists},
		{name: "another common name is a conflict", who: member, cluster: "c1", first: &CreateRequest{},
			req: CreateRequest{CommonName: "other"}, wantStatus: 409, wantCode: api.CodeCAExists},
		{name: "another project's member may not read an existing CA through create", who: otherMember, cluster: "c1", first: &CreateRequest{},
			wantStatus: 403, wantCode: api.CodeForbidden},
		{name: "a member may not create in another project", who: member, cluster: "c1",
			req: CreateRequest{ProjectID: "p2"}, wantStatus: 403, wantCode: api.CodeForbidden},
		{name: "an admin creates in any project", who: admin, cluster: "c1",
			req: CreateRequest{ProjectID: "p2"}, wantCreated: true, wantProject: "p2"},
		{name: "a reader may not create", who: reader, cluster: "c1", wantStatus: 403, wantCode: api.CodeForbidden},
		{name: "an unknown algorithm is refused", who: member, cluster: "c1",
			req: CreateRequest{KeyAlgorithm: "dsa-1024"}, wantStatus: 400, wantCode: api.CodeInvalidAlgorithm},
		{name: "a negative validity is refused", who: member, cluster: "c1",
			req: CreateRequest{ValidityDays: -1}, wantStatus: 400, wantCode: api.CodeInvalidField},
		{name: "a validity over 30 years is refused", who: member, cluster: "c1",
			req: CreateRequest{ValidityDays: MaxCAValidityDays + 1}, wantStatus: 400, wantCode: api.CodeInvalidField},
		{name: "a long common name is refused", who: member, cluster: "c1",
			req: CreateRequest{CommonName: strings.Repeat("x", 65)}, wantStatus: 400, wantCode: api.CodeInvalidField},
		{name: "a name with a slash is refused", who: member, cluster: "a/b", wantStatus: 400, wantCode: api.CodeInvalidField},
		{name: "a name starting with a dot is refused", who: member, cluster: "..", wantStatus: 400, wantCode: api.CodeInvalidField},
		{name: "a 64-character name is refused", who: member, cluster: strings.Repeat("a", 64), wantStatus: 400, wantCode: api.CodeInvalidField},
		{name: "an empty name is refused", who: member, cluster: "", wantStatus: 400, wantCode: api.CodeInvalidField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			var before Resource
			if tt.first != nil {
				before = f.mustCreate(t, tt.cluster, *tt.first)
			}
			res, created, err := f.a.CreateCA(as(tt.who), tt.cluster, tt.req)
			status, code := codeOf(err)
			if status != tt.wantStatus || code != tt.wantCode {
				t.Fatalf("CreateCA = %d %s (%v), want %d %s", status, code, err, tt.wantStatus, tt.wantCode)
			}
			if created != tt.wantCreated {
				t.Fatalf("created = %v, want %v", created, tt.wantCreated)
			}
			wantKeys := 0
			if tt.first != nil || created {
				wantKeys = 1
			}
			if n := len(f.keys.liveRefs()); n != wantKeys {
				t.Fatalf("%d keys in custody, want %d", n, wantKeys)
			}
			if err != nil {
				return
			}
			if tt.first != nil && res != before {
				t.Fatalf("repeated create returned %+v, want %+v", res, before)
			}
			c, _ := f.st.Cluster(context.Background(), tt.cluster)
			if c.Project != tt.wantProject {
				t.Fatalf("project = %q, want %q", c.Project, tt.wantProject)
			}
		})
	}
}

func TestCreatedCAIsASelfSignedCA(t *testing.T) {
	tests := []struct {
		req     CreateRequest
		wantKey func(any) bool
		wantCN  string
		days    int
	}{
		{CreateRequest{}, func(k any) bool { e, ok := k.(*ecdsa.PublicKey); return ok && e.Curve == elliptic.P256() }, "c1", DefaultCAValidityDays},
		{CreateRequest{KeyAlgorithm: "ecdsa-p384", CommonName: "Cluster c1 CA", ValidityDays: 90},
			func(k any) bool { e, ok := k.(*ecdsa.PublicKey); return ok && e.Curve == elliptic.P384() }, "Cluster c1 CA", 90},
		{CreateRequest{KeyAlgorithm: "rsa-2048"}, func(k any) bool { _, ok := k.(*rsa.PublicKey); return ok }, "c1", DefaultCAValidityDays},
	}
	for _, tt := range tests {
		name := tt.req.KeyAlgorithm
		if name == "" {
			name = "default"
		}
		t.Run("a "+name+" CA is a path-length-0 CA with the asked validity", func(t *testing.T) {
			f := newFixture(t, Options{})
			res := f.mustCreate(t, "c1", tt.req)
			c := parseCertPEM(t, res.Certificate)
			if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
				t.Errorf("CA=%v maxPathLen=%d", c.IsCA, c.MaxPathLen)
			}
			if c.KeyUsage&x509.KeyUsageCertSign == 0 {
				t.Error("no keyCertSign")
			}
			if err := c.CheckSignatureFrom(c); err != nil {
				t.Errorf("not self-signed: %v", err)
			}
			if !tt.wantKey(c.PublicKey) {
				t.Errorf("key %T", c.PublicKey)
			}
			if c.Subject.CommonName != tt.wantCN {
				t.Errorf("CN = %q, want %q", c.Subject.CommonName, tt.wantCN)
			}
			now := f.clock.Now()
			if !c.NotBefore.Equal(now.Add(-time.Minute)) || !c.NotAfter.Equal(now.AddDate(0, 0, tt.days)) {
				t.Errorf("validity %v – %v", c.NotBefore, c.NotAfter)
			}
			if res.Generation != 1 || res.TrustBundle != res.Certificate || res.Cluster != "c1" ||
				!res.NotBefore.Equal(c.NotBefore) || !res.NotAfter.Equal(c.NotAfter) || res.NotAfter.Location() != time.UTC {
				t.Errorf("resource %+v", res)
			}
			refs := f.keys.liveRefs()
			if len(refs) != 1 || !strings.HasPrefix(refs[0], "ca/c1/1/") || len(refs[0]) != len("ca/c1/1/")+32 {
				t.Errorf("key refs %v", refs)
			}
		})
	}
}

func TestConcurrentCreatesLeaveOneCAAndNoOrphanKey(t *testing.T) {
	tests := []struct {
		name      string
		second    CreateRequest
		wantCode  string
		wantValid bool
	}{
		{"the same parameters: both succeed, one created", CreateRequest{}, "", true},
		{"other parameters: the loser gets ca_exists", CreateRequest{KeyAlgorithm: "ecdsa-p384"}, api.CodeCAExists, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			// Both creates generate their key before either stores.
			var arrived sync.WaitGroup
			arrived.Add(2)
			f.st.beforeCreate = func() { arrived.Done(); arrived.Wait() }
			type out struct {
				res     Resource
				created bool
				err     error
			}
			outs := make([]out, 2)
			var wg sync.WaitGroup
			for i, req := range []CreateRequest{{}, tt.second} {
				wg.Go(func() {
					res, created, err := f.a.CreateCA(as(member), "c1", req)
					outs[i] = out{res, created, err}
				})
			}
			wg.Wait()
			winners, codes := 0, []string{}
			for _, o := range outs {
				if o.created {
					winners++
				}
				_, code := codeOf(o.err)
				codes = append(codes, code)
			}
			if winners != 1 {
				t.Fatalf("%d creates won, want 1 (%+v)", winners, codes)
			}
			if tt.wantValid && (outs[0].err != nil || outs[1].err != nil || outs[0].res != outs[1].res) {
				t.Fatalf("outcomes differ: %v %v", outs[0].err, outs[1].err)
			}
			if !tt.wantValid && !slices.Contains(codes, tt.wantCode) {
				t.Fatalf("codes %v, want one %s", codes, tt.wantCode)
			}
			gens, _ := f.st.Generations(context.Background(), "c1")
			live := f.keys.liveRefs()
			if len(live) != 1 || len(gens) != 1 || live[0] != gens[0].KeyRef {
				t.Fatalf("custody holds %v, store references %v", live, gens[0].KeyRef)
			}
			if len(f.keys.destroyed) != 1 {
				t.Fatalf("destroyed %v, want the loser's key", f.keys.destroyed)
			}
		})
	}
}

func TestShowCA(t *testing.T) {
	f := newFixture(t, Options{})
	want := f.mustCreate(t, "c1", CreateRequest{})
	tests := []struct {
		name     string
		who      auth.Principal
		cluster  string
		wantCode string
	}{
		{"a member reads its project's CA", member, "c1", ""},
		{"a reader reads its project's CA", reader, "c1", ""},
		{"an admin reads any CA", admin, "c1", ""},
		{"another project's member is forbidden", otherMember, "c1", api.CodeForbidden},
		{"an unknown cluster is ca_not_found", member, "c2", api.CodeCANotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.a.CA(as(tt.who), tt.cluster)
			if _, code := codeOf(err); code != tt.wantCode {
				t.Fatalf("CA = %v, want %q", err, tt.wantCode)
			}
			if err == nil && got != want {
				t.Fatalf("CA = %+v, want %+v", got, want)
			}
		})
	}
	if _, err := f.a.CA(context.Background(), "c1"); !errors.Is(err, api.ErrUnauthenticated) {
		t.Fatalf("CA without a principal = %v, want unauthenticated", err)
	}
}

func signClient(t *testing.T, f *fixture, cluster string) SignResult {
	t.Helper()
	res, err := f.a.Sign(as(member), cluster, SignRequest{CSR: makeCSR(t, csrOptions{cn: member.User})})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestRekeyWithoutGraceDropsTheOldCAAtOnce(t *testing.T) {
	f := newFixture(t, Options{})
	old := f.mustCreate(t, "c1", CreateRequest{})
	before := signClient(t, f, "c1")

	res, err := f.a.Rekey(as(member), "c1", RekeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	if res.Generation != 2 || res.Certificate == old.Certificate || res.TrustBundle != res.Certificate {
		t.Fatalf("rekey returned generation %d, bundle of %d", res.Generation, strings.Count(res.TrustBundle, "BEGIN"))
	}
	if verifies(t, before.Certificate, res.TrustBundle, now) {
		t.Error("a certificate signed before the rekey still verifies against the new trust bundle")
	}
	after := signClient(t, f, "c1")
	if after.CAGeneration != 2 || !verifies(t, after.Certificate, res.TrustBundle, now) {
		t.Error("a certificate signed after the rekey does not verify")
	}
	certs := f.st.all("c1")
	for _, c := range certs {
		if revoked := !c.RevokedAt.IsZero(); revoked != (c.Serial == before.Serial) {
			t.Errorf("certificate %s of generation %d revoked=%v", c.Serial, c.Generation, revoked)
		}
	}
	refs := f.keys.liveRefs()
	if len(refs) != 1 || !strings.HasPrefix(refs[0], "ca/c1/2/") {
		t.Errorf("custody holds %v, want only the new key: the retired one signs nothing more", refs)
	}
}

func TestRekeyWithGraceKeepsTheOldCAUntilItEnds(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	before := signClient(t, f, "c1")
	grace := int64(3600)
	res, err := f.a.Rekey(as(member), "c1", RekeyRequest{GracePeriodSeconds: &grace})
	if err != nil {
		t.Fatal(err)
	}
	if _, n := poolOf(t, res.TrustBundle); n != 2 || !strings.HasPrefix(res.TrustBundle, res.Certificate) {
		t.Fatalf("trust bundle has %d CAs, want the new one then the old one", n)
	}
	if !verifies(t, before.Certificate, res.TrustBundle, f.clock.Now()) {
		t.Error("within the grace period an old certificate does not verify")
	}
	f.clock.Advance(59 * time.Minute)
	mid, err := f.a.CA(as(member), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if !verifies(t, before.Certificate, mid.TrustBundle, f.clock.Now()) {
		t.Error("one minute before the grace ends, an old certificate does not verify")
	}
	f.clock.Advance(time.Minute)
	later, err := f.a.CA(as(member), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if later.TrustBundle != later.Certificate || verifies(t, before.Certificate, later.TrustBundle, f.clock.Now()) {
		t.Error("after the grace period the old CA is still trusted")
	}
}

func TestRekeyRequests(t *testing.T) {
	one, two, neg, tooLong, zero := 1, 2, int64(-1), int64(MaxGracePeriod/time.Second)+1, 0
	tests := []struct {
		name       string
		who        auth.Principal
		req        RekeyRequest
		wantStatus int
		wantCode   string
	}{
		{"the current expected generation rekeys", member, RekeyRequest{ExpectedGeneration: &one}, 0, ""},
		{"a stale expected generation is a mismatch", member, RekeyRequest{ExpectedGeneration: &two}, 409, api.CodeGenerationMismatch},
		{"a zero expected generation is invalid", member, RekeyRequest{ExpectedGeneration: &zero}, 400, api.CodeInvalidField},
		{"a negative grace is refused", member, RekeyRequest{GracePeriodSeconds: &neg}, 400, api.CodeInvalidField},
		{"a grace over 90 days is refused", member, RekeyRequest{GracePeriodSeconds: &tooLong}, 400, api.CodeInvalidField},
		{"a reader may not rekey", reader, RekeyRequest{}, 403, api.CodeForbidden},
		{"another project's member may not rekey", otherMember, RekeyRequest{}, 403, api.CodeForbidden},
		{"an admin may rekey", admin, RekeyRequest{}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			f.mustCreate(t, "c1", CreateRequest{})
			_, err := f.a.Rekey(as(tt.who), "c1", tt.req)
			if status, code := codeOf(err); status != tt.wantStatus || code != tt.wantCode {
				t.Fatalf("Rekey = %d %s (%v), want %d %s", status, code, err, tt.wantStatus, tt.wantCode)
			}
			wantKeys := 1
			if err == nil {
				wantKeys = 2
			}
			if n := len(f.keys.generated); n != wantKeys {
				t.Fatalf("%d keys generated, want %d", n, wantKeys)
			}
		})
	}
	f := newFixture(t, Options{})
	if _, err := f.a.Rekey(as(member), "c9", RekeyRequest{}); func() string { _, c := codeOf(err); return c }() != api.CodeCANotFound {
		t.Fatalf("rekey of an unknown cluster = %v", err)
	}
}

func TestRekeyThatLosesTheCompareAndSwapDestroysItsKey(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	// Another instance rekeys between our read and our swap.
	f.st.rekey = func(ctx context.Context, cluster string, expected int, next store.CAGeneration, now, until time.Time) error {
		f.st.rekey = nil
		if _, err := f.a.Rekey(as(member), cluster, RekeyRequest{}); err != nil {
			return fmt.Errorf("concurrent rekey: %w", err)
		}
		return f.st.doRekey(cluster, expected, next, now, until)
	}
	_, err := f.a.Rekey(as(member), "c1", RekeyRequest{})
	if status, code := codeOf(err); status != http.StatusConflict || code != api.CodeGenerationMismatch {
		t.Fatalf("Rekey = %v, want 409 generation_mismatch", err)
	}
	c, _ := f.st.Cluster(context.Background(), "c1")
	gens, _ := f.st.Generations(context.Background(), "c1")
	if c.Generation != 2 || len(gens) != 2 {
		t.Fatalf("cluster at generation %d with %d generations, want 2 and 2", c.Generation, len(gens))
	}
	// Live: the winner's key only. Destroyed: the loser's (never stored)
	// and the retired generation 1's (destroyed by the winner).
	live := f.keys.liveRefs()
	if len(live) != 1 || live[0] != gens[0].KeyRef || len(f.keys.destroyed) != 2 {
		t.Fatalf("custody holds %v, destroyed %v: want only the active key %s", live, f.keys.destroyed, gens[0].KeyRef)
	}
	if !slices.Contains(f.keys.destroyed, gens[1].KeyRef) {
		t.Fatalf("the retired generation's key %s was not destroyed", gens[1].KeyRef)
	}
}

func TestRekeyKeepsItsKeyWhenTheStoreCommittedDespiteAnError(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	f.st.rekey = func(_ context.Context, cluster string, expected int, next store.CAGeneration, now, until time.Time) error {
		if err := f.st.doRekey(cluster, expected, next, now, until); err != nil {
			return err
		}
		return fmt.Errorf("connection reset after commit: %w", api.ErrUnavailable)
	}
	res, err := f.a.Rekey(as(member), "c1", RekeyRequest{})
	if err != nil || res.Generation != 2 {
		t.Fatalf("Rekey = %d, %v; want generation 2", res.Generation, err)
	}
	gens, _ := f.st.Generations(context.Background(), "c1")
	if live := f.keys.liveRefs(); len(live) != 1 || live[0] != gens[0].KeyRef {
		t.Fatalf("custody holds %v, want the new generation's key %s kept", live, gens[0].KeyRef)
	}
}

func TestRekeyThatFailsWithAnUnknownOutcomeKeepsItsKey(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	f.st.rekey = func(context.Context, string, int, store.CAGeneration, time.Time, time.Time) error {
		return fmt.Errorf("database down: %w", api.ErrUnavailable)
	}
	_, err := f.a.Rekey(as(member), "c1", RekeyRequest{})
	if status, _ := codeOf(err); status != http.StatusServiceUnavailable {
		t.Fatalf("Rekey = %v, want 503", err)
	}
	// The write may have committed: the key stays for the reconciler.
	if len(f.keys.destroyed) != 0 || len(f.keys.liveRefs()) != 2 {
		t.Fatalf("destroyed %v, live %v; want both keys kept", f.keys.destroyed, f.keys.liveRefs())
	}
}

func TestGracePeriodsNeverExtendAnEarlierOne(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	first := signClient(t, f, "c1")
	long, none := int64(7200), int64(0)
	if _, err := f.a.Rekey(as(member), "c1", RekeyRequest{GracePeriodSeconds: &long}); err != nil {
		t.Fatal(err)
	}
	res, err := f.a.Rekey(as(member), "c1", RekeyRequest{GracePeriodSeconds: &none})
	if err != nil {
		t.Fatal(err)
	}
	if res.Generation != 3 || res.TrustBundle != res.Certificate || verifies(t, first.Certificate, res.TrustBundle, f.clock.Now()) {
		t.Fatal("a rekey with grace 0 kept an older generation trusted")
	}
}

func TestRekeyDestroysTheKeyItRetiredAndLeavesEarlierFailuresToTheReconciler(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	f.keys.destroyErr = fmt.Errorf("token gone: %w", api.ErrUnavailable)
	if res, err := f.a.Rekey(as(member), "c1", RekeyRequest{}); err != nil || res.Generation != 2 {
		t.Fatalf("a rekey whose clean-up fails must still succeed: %d, %v", res.Generation, err)
	}
	if live := f.keys.liveRefs(); len(live) != 2 {
		t.Fatalf("custody holds %v, want both keys while Destroy fails", live)
	}
	f.keys.destroyErr = nil
	res, err := f.a.Rekey(as(member), "c1", RekeyRequest{})
	if err != nil || res.Generation != 3 {
		t.Fatalf("second rekey: %d, %v", res.Generation, err)
	}
	// A rekey destroys the key it retired (generation 2), one key per
	// rekey whatever the history; generation 1's is the reconciler's.
	live := f.keys.liveRefs()
	slices.Sort(live)
	if len(live) != 2 || !strings.HasPrefix(live[0], "ca/c1/1/") || !strings.HasPrefix(live[1], "ca/c1/3/") {
		t.Fatalf("custody holds %v, want generations 1 (left to the reconciler) and 3", live)
	}
}

func TestSignRacingARekeyIsARetryNotAFailure(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	// The rekey commits, and destroys generation 1's key, after the sign
	// read the generations and before it loads the key.
	f.keys.beforeSigner = func(string) {
		f.keys.beforeSigner = nil
		if _, err := f.a.Rekey(as(member), "c1", RekeyRequest{}); err != nil {
			t.Errorf("concurrent rekey: %v", err)
		}
	}
	_, err := f.a.Sign(as(member), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice"})})
	if status, code := codeOf(err); status != http.StatusConflict || code != api.CodeGenerationMismatch {
		t.Fatalf("Sign = %v, want 409 generation_mismatch (retry)", err)
	}
	if r := signClient(t, f, "c1"); r.CAGeneration != 2 {
		t.Fatalf("the retry signed with generation %d, want 2", r.CAGeneration)
	}
}
