package tlsbundle

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// countPathValidations counts the x509 path validations until the test
// ends.
func countPathValidations(t *testing.T) *int {
	t.Helper()
	calls := new(int)
	var mu sync.Mutex
	verifyChain = func(c *x509.Certificate, opts x509.VerifyOptions) ([][]*x509.Certificate, error) {
		mu.Lock()
		*calls++
		mu.Unlock()
		return c.Verify(opts)
	}
	t.Cleanup(func() { verifyChain = (*x509.Certificate).Verify })
	return calls
}

// clockValidator is a Validator (with its caches unless noCache) whose
// clock the test sets.
func clockValidator(noCache bool) (*Validator, *time.Time) {
	now := new(time.Time)
	return NewValidator(Options{Now: func() time.Time { return *now }, NoCache: noCache}), now
}

// TestPathCacheReportsWhatValidateReports validates every case of
// validateCases, as given and with the fixture root added to ca_bundle, at
// the fixtures' time, then 30 years before and after, twice each, through
// one Validator whose path cache all of them share: every report must be
// the one Validate (no cache) gives.
func TestPathCacheReportsWhatValidateReports(t *testing.T) {
	p := corpus(t)
	v, clock := clockValidator(false)
	eachCaseInput(t, p, func(t *testing.T, in Input) {
		for _, now := range []time.Time{p.now, p.now.Add(-30 * 365 * 24 * time.Hour), p.now.Add(30 * 365 * 24 * time.Hour), p.now} {
			want := Validate(context.Background(), in, now)
			*clock = now
			for range 2 {
				got, err := v.Validate(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("at %s the cached report differs from Validate's:\ncached   %+v\nValidate %+v", now, got, want)
				}
			}
		}
	})
	if v.caches.paths.len() == 0 {
		t.Error("no path validation was remembered")
	}
	if n, _ := v.caches.certs.size(); n == 0 {
		t.Error("no certificate was remembered")
	}
}

// TestPathCacheValidatesABundleOnce checks that the same valid bundle
// anchored in ca_bundle is path-validated once by a Validator, every time
// without a cache, and again when anything Verify depends on differs: a
// certificate of the chain or of ca_bundle, or the validity of one of them
// at the time of the request (the same bytes, a later clock).
func TestPathCacheValidatesABundleOnce(t *testing.T) {
	p := corpus(t)
	in := good(t, p)
	in.CABundle = p.get(t, "root.pem")
	withB := in
	withB.CABundle += p.get(t, "rootB.pem")

	for _, tc := range []struct {
		name    string
		noCache bool
		steps   []struct {
			in    Input
			after time.Duration // from the fixtures' time
			calls int           // path validations of this step
			valid bool
		}
	}{
		{"cached", false, []struct {
			in    Input
			after time.Duration
			calls int
			valid bool
		}{
			{in, 0, 1, true},
			{in, 0, 0, true},
			{in, time.Minute, 0, true},
			{withB, 0, 1, true},
			{withB, 0, 0, true},
			{in, 0, 0, true},
			// Every certificate has expired: the key differs, Verify
			// fails, the long way reports it.
			{in, 2 * 365 * 24 * time.Hour, 2, false},
			{in, 2 * 365 * 24 * time.Hour, 2, false},
		}},
		{"no cache", true, []struct {
			in    Input
			after time.Duration
			calls int
			valid bool
		}{
			{in, 0, 1, true},
			{in, 0, 1, true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := countPathValidations(t)
			v, clock := clockValidator(tc.noCache)
			for i, st := range tc.steps {
				*calls = 0
				*clock = p.now.Add(st.after)
				r, err := v.Validate(context.Background(), st.in)
				if err != nil {
					t.Fatal(err)
				}
				if r.Valid != st.valid || *calls != st.calls {
					t.Errorf("step %d: valid %v with %d path validations, want %v with %d (errors %+v)", i, r.Valid, *calls, st.valid, st.calls, r.Errors)
				}
			}
		})
	}
}

// TestPathCacheSeesAValidityChange validates, through one Validator, a
// bundle whose certificates stop being valid at different times: each
// expiry (the intermediate's, then the root's) changes the report as it
// does without the cache, though the certificates are the same bytes.
func TestPathCacheSeesAValidityChange(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	span := func(s certSpec, d time.Duration) certSpec {
		s.notBefore, s.notAfter = now.Add(-time.Hour), now.Add(d)
		return s
	}
	root, rootKey, err := issue(span(certSpec{cn: "Expiring Root", ca: true}, 3*time.Hour), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	inter, interKey, err := issue(span(certSpec{cn: "Expiring Intermediate", ca: true}, time.Hour), root, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, leafKey, err := issue(span(certSpec{cn: "e.example.test", dns: []string{"e.example.test"}}, 10*time.Hour), inter, interKey)
	if err != nil {
		t.Fatal(err)
	}
	in := Input{Certificate: certPEM(leaf), PrivateKey: pkcs8PEM(leafKey), Intermediates: certPEM(inter), CABundle: certPEM(root)}
	v, clock := clockValidator(false)
	for _, tc := range []struct {
		after time.Duration
		want  []string
	}{
		{0, []string{}},
		{2 * time.Hour, []string{CodeIntermediateExpired}},
		{0, []string{}},
		{4 * time.Hour, []string{CodeIntermediateExpired}},
		{30 * time.Minute, []string{}},
	} {
		at := now.Add(tc.after)
		*clock = at
		got, err := v.Validate(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		want := Validate(context.Background(), in, at)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("at +%s the cached report differs from Validate's:\ncached   %+v\nValidate %+v", tc.after, got, want)
		}
		if errs, _ := got.Codes(); !reflect.DeepEqual(errs[:min(len(errs), len(tc.want))], tc.want) || len(tc.want) == 0 && len(errs) > 0 {
			t.Errorf("at +%s errors %v, want %v first", tc.after, errs, tc.want)
		}
	}
}

// TestPathCacheIsBounded fills a cache of 3 with 10 keys.
func TestPathCacheIsBounded(t *testing.T) {
	pc := newPathCache(3)
	var last [sha256.Size]byte
	for i := range 10 {
		last = [sha256.Size]byte{byte(i)}
		pc.add(last)
		pc.add(last)
	}
	if pc.len() != 3 {
		t.Errorf("%d entries, want 3", pc.len())
	}
	if !pc.has(last) {
		t.Error("the last key added is not remembered")
	}
	if newPathCache(0) != nil || newPathCache(-1) != nil {
		t.Error("a cache of no entries is not nil")
	}
	var none *pathCache
	none.add(last)
	if none.has(last) || none.len() != 0 {
		t.Error("a nil cache remembers")
	}
}

// TestCachesConcurrent validates from several goroutines through one
// Validator (for the race detector) two bundles, with caches too small for
// both, so that entries are added and dropped all the time.
func TestCachesConcurrent(t *testing.T) {
	p := corpus(t)
	a := good(t, p)
	a.CABundle = p.get(t, "root.pem")
	b := a
	b.CABundle += p.get(t, "rootB.pem")
	v, clock := clockValidator(false)
	v.caches = caches{paths: newPathCache(1), certs: newCertCache(len(p.root.Raw) + len(p.inter1.Raw))}
	*clock = p.now
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 10 {
				in := a
				if (g+i)%2 == 0 {
					in = b
				}
				if r, err := v.Validate(context.Background(), in); err != nil || !r.Valid {
					t.Errorf("valid %v, %v: %+v", r.Valid, err, r.Errors)
				}
			}
		})
	}
	wg.Wait()
}

// TestCertCache checks that a certificate is parsed once and then shared,
// that a DER that does not parse is not remembered and fails every time,
// and that the cache keeps within its bytes.
func TestCertCache(t *testing.T) {
	p := corpus(t)
	certs := []*x509.Certificate{p.root, p.inter1, p.inter2, p.leaf}
	cc := newCertCache(len(p.root.Raw) + len(p.inter1.Raw) + 10)
	first, err := cc.parse(p.leaf.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := cc.parse(slices.Clone(p.leaf.Raw)); again != first {
		t.Error("the same DER was parsed twice")
	}
	if !first.Equal(p.leaf) {
		t.Error("the cached certificate is not the leaf")
	}
	want := describe(p.leaf)
	want.pem = certPEM(p.leaf)
	for range 2 {
		if got := cc.text(first); got != want {
			t.Errorf("text %+v, want %+v", got, want)
		}
	}
	if got := cc.text(p.leaf); got != describe(p.leaf) { // another parse of the same DER
		t.Errorf("text of another parse %+v, want %+v", got, describe(p.leaf))
	}
	for range 3 {
		for _, c := range certs {
			got, err := cc.parse(c.Raw)
			if err != nil || !got.Equal(c) {
				t.Fatalf("parse %s: %v", c.Subject, err)
			}
			if n, b := cc.size(); b > cc.maxBytes || n > 2 {
				t.Fatalf("%d certificates, %d bytes: above the bound of %d bytes", n, b, cc.maxBytes)
			}
		}
	}
	bad := slices.Clone(p.leaf.Raw)
	bad[len(bad)/2] ^= 0xff
	for range 2 {
		if _, err := cc.parse(bad); err == nil {
			t.Fatal("a corrupted certificate parsed")
		}
	}
	if _, ok := cc.m[string(bad)]; ok {
		t.Error("a DER that does not parse was remembered")
	}
	var none *certCache
	if c, err := none.parse(p.leaf.Raw); err != nil || !c.Equal(p.leaf) {
		t.Errorf("a nil cache does not parse: %v", err)
	}
}

// TestCachedReportsShareNothing changes a report of a Validator with its
// caches and checks that the next report of the same bundle is not
// changed with it.
func TestCachedReportsShareNothing(t *testing.T) {
	p := corpus(t)
	in := good(t, p)
	in.CABundle = p.get(t, "root.pem")
	v, clock := clockValidator(false)
	*clock = p.now
	first, err := v.Validate(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	want := Validate(context.Background(), in, p.now)
	for i := range first.Certificate.DNSNames {
		first.Certificate.DNSNames[i] = "changed.example.test"
	}
	for i := range first.HostNames.DNSNames {
		first.HostNames.DNSNames[i] = "changed.example.test"
	}
	again, err := v.Validate(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, want) {
		t.Errorf("a change to one report shows in the next:\ngot  %+v\nwant %+v", again, want)
	}
}

// TestRootValidityIsReported: a ca_bundle root that expired, or is not
// valid yet, above a valid intermediate and leaf, is an error on
// ca_bundle, with and without the caches. Before, x509's Expired was taken
// as already reported, and such a chain was valid with nothing said.
func TestRootValidityIsReported(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	for _, tc := range []struct {
		name                string
		notBefore, notAfter time.Time
		want                string
	}{
		{"expired root", now.Add(-10 * time.Hour), now.Add(-time.Hour), CodeIntermediateExpired},
		{"root not yet valid", now.Add(time.Hour), now.Add(10 * time.Hour), CodeIntermediateNotYetValid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, rootKey, err := issue(certSpec{cn: "Root " + tc.name, ca: true, notBefore: tc.notBefore, notAfter: tc.notAfter}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			inter, interKey, err := issue(certSpec{cn: "Intermediate", ca: true, notBefore: now.Add(-2 * time.Hour), notAfter: now.Add(5 * time.Hour)}, root, rootKey)
			if err != nil {
				t.Fatal(err)
			}
			leaf, leafKey, err := issue(certSpec{cn: "r.example.test", dns: []string{"r.example.test"}, notBefore: now.Add(-2 * time.Hour), notAfter: now.Add(5 * time.Hour)}, inter, interKey)
			if err != nil {
				t.Fatal(err)
			}
			in := Input{Certificate: certPEM(leaf), PrivateKey: pkcs8PEM(leafKey), Intermediates: certPEM(inter), CABundle: certPEM(root)}
			v, clock := clockValidator(false)
			*clock = now
			cached, err := v.Validate(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			for name, r := range map[string]Report{"Validate": Validate(context.Background(), in, now), "a Validator": cached} {
				if r.Valid || len(r.Errors) != 1 || r.Errors[0].Code != tc.want || r.Errors[0].Field != FieldCABundle {
					t.Errorf("%s: valid %v, errors %+v; want one %s on %s", name, r.Valid, r.Errors, tc.want, FieldCABundle)
				}
			}
		})
	}
}
