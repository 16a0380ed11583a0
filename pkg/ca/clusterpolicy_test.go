package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// The policy's tests run on the real SQLite store and software custody.

var (
	polAdmin    = auth.Principal{User: "root", Project: "ops", Roles: []string{auth.RoleAdmin}}
	polMember   = auth.Principal{User: "alice", Project: "team-a", Roles: []string{auth.RoleMember}}
	polReader   = auth.Principal{User: "rita", Project: "team-a", Roles: []string{auth.RoleReader}}
	polOutsider = auth.Principal{User: "bob", Project: "team-b", Roles: []string{auth.RoleMember}}
	// polNow is the fixed clock of these tests, on a whole second.
	polNow = time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
)

func polCtx(p auth.Principal) context.Context { return auth.WithPrincipal(context.Background(), p) }

// newPolicyAuthority returns an Authority on a fresh SQLite file and
// software custody, at polNow, with cluster "prod" of project team-a (CA
// valid ten years) and, when caDays > 0, cluster "short" whose CA lives
// caDays days. It also returns the store's path and master key, for a
// second instance.
func newPolicyAuthority(t *testing.T, st func(*sqlite.DB) Store) (*Authority, string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clusterkeys.db")
	master := newMasterKey(t)
	db, k := openInstance(t, path, master)
	var s Store = db
	if st != nil {
		s = st(db)
	}
	a := New(s, k, Options{
		Now:    func() time.Time { return polNow },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if _, _, err := a.CreateCA(polCtx(polAdmin), "prod", CreateRequest{ProjectID: "team-a"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.CreateCA(polCtx(polAdmin), "short", CreateRequest{ProjectID: "team-a", ValidityDays: 2}); err != nil {
		t.Fatal(err)
	}
	return a, path, master
}

// polCSR returns a PEM CSR with a fresh P-256 key, subject cn and orgs,
// and a DNS name when dns is set.
func polCSR(t *testing.T, cn string, orgs []string, dns ...string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn, Organization: orgs}, DNSNames: dns,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// polRefusal is what a client sees of an error.
type polRefusal struct {
	status      int
	code, field string
}

func refusalOf(err error) polRefusal {
	e := api.ErrorFor(err)
	r := polRefusal{status: e.Status, code: e.Code}
	if len(e.Fields) > 0 {
		r.field = e.Fields[0].Field
	}
	return r
}

// putPolicy sends body to the PUT handler as p, as the gateway would, and
// returns the handler's answer or error.
func putPolicy(t *testing.T, a *Authority, p auth.Principal, cluster, body string) (*httptest.ResponseRecorder, error) {
	t.Helper()
	r := httptest.NewRequestWithContext(polCtx(p), http.MethodPut, "/v1/clusters/"+cluster+"/policy", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.SetPathValue("cluster", cluster)
	w := httptest.NewRecorder()
	return w, a.handleSetPolicy(w, r)
}

func hours(h int) *int { return &h }

// TestSetPolicyValidation: every refusal of the brief names its field;
// what is accepted is stored and answered with its effective values.
func TestSetPolicyValidation(t *testing.T) {
	a, _, _ := newPolicyAuthority(t, nil)
	groups := func(n int) string {
		var gs []string
		for i := range n {
			gs = append(gs, fmt.Sprintf("%q", fmt.Sprintf("group-%d", i)))
		}
		return `{"allowed_groups":[` + strings.Join(gs, ",") + `]}`
	}
	refused := []struct {
		name string
		body string
		want polRefusal
	}{
		{"an unknown profile", `{"profiles":{"admin":{"max_validity_hours":1}}}`, polRefusal{400, api.CodeInvalidField, "profiles.admin"}},
		{"a profile named in another case", `{"profiles":{"Client":{"max_validity_hours":1}}}`, polRefusal{400, api.CodeInvalidField, "profiles.Client"}},
		{"a zero default", `{"profiles":{"client":{"default_validity_hours":0}}}`, polRefusal{400, api.CodeInvalidField, "profiles.client.default_validity_hours"}},
		{"a negative max", `{"profiles":{"server":{"max_validity_hours":-5}}}`, polRefusal{400, api.CodeInvalidField, "profiles.server.max_validity_hours"}},
		{"a max beyond the service's", `{"profiles":{"peer":{"max_validity_hours":17521}}}`, polRefusal{400, api.CodeInvalidField, "profiles.peer.max_validity_hours"}},
		{"a huge max", `{"profiles":{"peer":{"max_validity_hours":9223372036854775807}}}`, polRefusal{400, api.CodeInvalidField, "profiles.peer.max_validity_hours"}},
		{"a default above its max", `{"profiles":{"client":{"default_validity_hours":25,"max_validity_hours":24}}}`, polRefusal{400, api.CodeInvalidField, "profiles.client.default_validity_hours"}},
		{"a default above the service's max", `{"profiles":{"client":{"default_validity_hours":17521}}}`, polRefusal{400, api.CodeInvalidField, "profiles.client.default_validity_hours"}},
		{"hours as a string", `{"profiles":{"client":{"max_validity_hours":"24"}}}`, polRefusal{400, api.CodeInvalidField, "profiles.client.max_validity_hours"}},
		{"an unknown field in a profile", `{"profiles":{"client":{"max_hours":24}}}`, polRefusal{400, api.CodeUnknownField, "profiles.client.max_hours"}},
		{"a repeated field in a profile", `{"profiles":{"client":{"max_validity_hours":24,"max_validity_hours":9999}}}`, polRefusal{400, api.CodeDuplicateField, "profiles.client.max_validity_hours"}},
		{"a profile that is no object", `{"profiles":{"client":24}}`, polRefusal{400, api.CodeInvalidField, "profiles.client"}},
		{"an unknown top-level field", `{"allowed_group":["dev"]}`, polRefusal{400, api.CodeUnknownField, "allowed_group"}},
		{"65 groups", groups(65), polRefusal{400, api.CodeInvalidField, "allowed_groups"}},
		{"an empty group", `{"allowed_groups":["dev",""]}`, polRefusal{400, api.CodeInvalidField, "allowed_groups[1]"}},
		{"a group of 65 bytes", `{"allowed_groups":["` + strings.Repeat("g", 65) + `"]}`, polRefusal{400, api.CodeInvalidField, "allowed_groups[0]"}},
		{"a control character", `{"allowed_groups":["dev","ops\u0007"]}`, polRefusal{400, api.CodeSubjectNotAllowed, "allowed_groups[1]"}},
		{"a C1 control character", `{"allowed_groups":["ops\u0085x"]}`, polRefusal{400, api.CodeSubjectNotAllowed, "allowed_groups[0]"}},
		{"a repeated group", `{"allowed_groups":["dev","ops","dev"]}`, polRefusal{400, api.CodeInvalidField, "allowed_groups[2]"}},
		{"no body", ``, polRefusal{400, api.CodeMalformedJSON, ""}},
	}
	for _, tt := range refused {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			_, err := putPolicy(t, a, polAdmin, "prod", tt.body)
			if err == nil {
				t.Fatal("accepted")
			}
			if got := refusalOf(err); got != tt.want {
				t.Fatalf("refusal %+v, want %+v (%v)", got, tt.want, err)
			}
			c, err := a.st.Cluster(context.Background(), "prod")
			if err != nil {
				t.Fatal(err)
			}
			if !c.Policy.IsZero() {
				t.Fatalf("a refused PUT stored %+v", c.Policy)
			}
		})
	}

	service := func(client, server, peer ProfileLimits) map[string]ProfileLimits {
		return map[string]ProfileLimits{"client": client, "server": server, "peer": peer}
	}
	defClient, defServer := ProfileLimits{720, 17520}, ProfileLimits{8760, 17520}
	accepted := []struct {
		name   string
		body   string
		stored store.ClusterPolicy
		answer string // compact JSON
	}{
		{"the contract's example",
			`{"profiles":{"client":{"default_validity_hours":24,"max_validity_hours":168}},"allowed_groups":["developers","viewers"]}`,
			store.ClusterPolicy{Profiles: map[string]store.ProfilePolicy{"client": {DefaultValidityHours: 24, MaxValidityHours: 168}}, AllowedGroups: []string{"developers", "viewers"}},
			`{"profiles":{"client":{"default_validity_hours":24,"max_validity_hours":168},"peer":{"default_validity_hours":8760,"max_validity_hours":17520},"server":{"default_validity_hours":8760,"max_validity_hours":17520}},"allowed_groups":["developers","viewers"]}`},
		{"a max alone lowers the default",
			`{"profiles":{"server":{"max_validity_hours":2160},"peer":{"max_validity_hours":17520}}}`,
			store.ClusterPolicy{Profiles: map[string]store.ProfilePolicy{"server": {MaxValidityHours: 2160}, "peer": {MaxValidityHours: 17520}}},
			mustJSON(t, ClusterPolicy{Profiles: service(defClient, ProfileLimits{2160, 2160}, defServer)})},
		{"a default alone keeps the service's max",
			`{"profiles":{"client":{"default_validity_hours":8}}}`,
			store.ClusterPolicy{Profiles: map[string]store.ProfilePolicy{"client": {DefaultValidityHours: 8}}},
			mustJSON(t, ClusterPolicy{Profiles: service(ProfileLimits{8, 17520}, defServer, defServer)})},
		{"an empty allowed list allows no group",
			`{"allowed_groups":[]}`,
			store.ClusterPolicy{AllowedGroups: []string{}},
			mustJSON(t, ClusterPolicy{Profiles: service(defClient, defServer, defServer), AllowedGroups: []string{}})},
		{"64 groups", groups(64), store.ClusterPolicy{}, ""},
		{"a privileged group may be listed (it stays refused to members)",
			`{"allowed_groups":["system:nodes"]}`,
			store.ClusterPolicy{AllowedGroups: []string{"system:nodes"}}, ""},
		{"an empty profile sets nothing", `{"profiles":{"peer":{}}}`, store.ClusterPolicy{},
			mustJSON(t, ClusterPolicy{Profiles: service(defClient, defServer, defServer)})},
		{"{} clears the policy", `{}`, store.ClusterPolicy{},
			mustJSON(t, ClusterPolicy{Profiles: service(defClient, defServer, defServer)})},
	}
	for _, tt := range accepted {
		t.Run("accepted/"+tt.name, func(t *testing.T) {
			w, err := putPolicy(t, a, polAdmin, "prod", tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if w.Code != http.StatusOK {
				t.Fatalf("status %d", w.Code)
			}
			if tt.answer != "" && strings.TrimSpace(w.Body.String()) != tt.answer {
				t.Fatalf("answer %s\nwant   %s", w.Body, tt.answer)
			}
			c, err := a.st.Cluster(context.Background(), "prod")
			if err != nil {
				t.Fatal(err)
			}
			if tt.name == "64 groups" {
				if len(c.Policy.AllowedGroups) != 64 {
					t.Fatalf("stored %d groups", len(c.Policy.AllowedGroups))
				}
				return
			}
			if !reflect.DeepEqual(c.Policy, tt.stored) {
				t.Fatalf("stored %#v\nwant   %#v", c.Policy, tt.stored)
			}
			// GET answers what PUT answered.
			got, err := a.ClusterPolicy(polCtx(polReader), "prod")
			if err != nil {
				t.Fatal(err)
			}
			if tt.answer != "" && mustJSON(t, got) != tt.answer {
				t.Fatalf("GET %s\nwant %s", mustJSON(t, got), tt.answer)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPolicyAuthorization: readers of the cluster's project and admins
// read the policy; only admins set it; an unknown cluster is 404
// ca_not_found for everyone.
func TestPolicyAuthorization(t *testing.T) {
	a, _, _ := newPolicyAuthority(t, nil)
	body := `{"profiles":{"client":{"max_validity_hours":24}}}`
	tests := []struct {
		name    string
		who     auth.Principal
		cluster string
		put     bool
		want    polRefusal // zero: allowed
	}{
		{"admin sets", polAdmin, "prod", true, polRefusal{}},
		{"admin reads", polAdmin, "prod", false, polRefusal{}},
		{"member reads", polMember, "prod", false, polRefusal{}},
		{"reader reads", polReader, "prod", false, polRefusal{}},
		{"member may not set", polMember, "prod", true, polRefusal{403, api.CodeForbidden, ""}},
		{"reader may not set", polReader, "prod", true, polRefusal{403, api.CodeForbidden, ""}},
		{"a project admin is no global admin", auth.Principal{User: "pa", Project: "team-a", Roles: []string{auth.RoleAdmin}, AdminProjectOnly: true}, "prod", true, polRefusal{403, api.CodeForbidden, ""}},
		{"another project may not read", polOutsider, "prod", false, polRefusal{403, api.CodeForbidden, ""}},
		{"unknown cluster, read", polAdmin, "nope", false, polRefusal{404, api.CodeCANotFound, ""}},
		{"unknown cluster, set", polAdmin, "nope", true, polRefusal{404, api.CodeCANotFound, ""}},
		{"unknown cluster, member set", polMember, "nope", true, polRefusal{404, api.CodeCANotFound, ""}},
		{"invalid cluster name", polAdmin, "-bad", false, polRefusal{400, api.CodeInvalidField, "cluster"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.put {
				_, err = putPolicy(t, a, tt.who, tt.cluster, body)
			} else {
				_, err = a.ClusterPolicy(polCtx(tt.who), tt.cluster)
			}
			if tt.want == (polRefusal{}) {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if got := refusalOf(err); got != tt.want {
				t.Fatalf("refusal %+v, want %+v (%v)", got, tt.want, err)
			}
		})
	}
	t.Run("without a policy GET shows the service's defaults", func(t *testing.T) {
		got, err := a.ClusterPolicy(polCtx(polMember), "short")
		if err != nil {
			t.Fatal(err)
		}
		want := `{"profiles":{"client":{"default_validity_hours":720,"max_validity_hours":17520},"peer":{"default_validity_hours":8760,"max_validity_hours":17520},"server":{"default_validity_hours":8760,"max_validity_hours":17520}}}`
		if mustJSON(t, got) != want {
			t.Fatalf("GET %s\nwant %s", mustJSON(t, got), want)
		}
	})
}

// TestSignFollowsTheClusterPolicy: the validity a sign gets, and what it
// is refused, under each policy; without one, everything is as before.
func TestSignFollowsTheClusterPolicy(t *testing.T) {
	a, _, _ := newPolicyAuthority(t, nil)
	short := &store.ClusterPolicy{
		Profiles: map[string]store.ProfilePolicy{
			"client": {DefaultValidityHours: 8, MaxValidityHours: 24},
			"peer":   {DefaultValidityHours: 48},
		},
	}
	maxOnly := &store.ClusterPolicy{Profiles: map[string]store.ProfilePolicy{"client": {MaxValidityHours: 24}, "server": {MaxValidityHours: 2160}}}
	groups := &store.ClusterPolicy{AllowedGroups: []string{"developers", "viewers", "system:nodes"}}
	none := &store.ClusterPolicy{AllowedGroups: []string{}}
	// Never written by SetClusterPolicy: as if the service's maximum had
	// been lowered since, or the row edited by hand.
	huge := &store.ClusterPolicy{Profiles: map[string]store.ProfilePolicy{"client": {DefaultValidityHours: math.MaxInt, MaxValidityHours: math.MaxInt}}}
	longDefault := &store.ClusterPolicy{Profiles: map[string]store.ProfilePolicy{"client": {DefaultValidityHours: 17520}}}

	type sign struct {
		who     auth.Principal
		profile Profile
		hours   int
		orgs    []string
	}
	tests := []struct {
		name    string
		cluster string
		policy  *store.ClusterPolicy // nil: none
		sign    sign
		want    time.Duration // validity; 0 when refused
		refused polRefusal
		says    string // in the refusal's message
	}{
		{"no policy: a client certificate's default", "prod", nil, sign{polMember, ProfileClient, 0, nil}, 720 * time.Hour, polRefusal{}, ""},
		{"no policy: a server certificate's default", "prod", nil, sign{polMember, ProfileServer, 0, nil}, 8760 * time.Hour, polRefusal{}, ""},
		{"no policy: the service's max", "prod", nil, sign{polMember, ProfileClient, 17520, nil}, 17520 * time.Hour, polRefusal{}, ""},
		{"no policy: any group", "prod", nil, sign{polMember, ProfileClient, 0, []string{"anything"}}, 720 * time.Hour, polRefusal{}, ""},
		{"no policy: beyond the service's max", "prod", nil, sign{polMember, ProfileClient, 17521, nil}, 0, polRefusal{400, api.CodeInvalidField, "validity_hours"}, "17520"},

		{"the policy's default", "prod", short, sign{polMember, ProfileClient, 0, nil}, 8 * time.Hour, polRefusal{}, ""},
		{"up to the policy's max", "prod", short, sign{polMember, ProfileClient, 24, nil}, 24 * time.Hour, polRefusal{}, ""},
		{"over the policy's max", "prod", short, sign{polMember, ProfileClient, 25, nil}, 0, polRefusal{400, api.CodeInvalidField, "validity_hours"}, "between 1 and 24"},
		{"an admin is bounded by the max too", "prod", short, sign{polAdmin, ProfileClient, 25, nil}, 0, polRefusal{400, api.CodeInvalidField, "validity_hours"}, "between 1 and 24"},
		{"another profile's default stays", "prod", short, sign{polMember, ProfileServer, 0, nil}, 8760 * time.Hour, polRefusal{}, ""},
		{"another profile's max stays", "prod", short, sign{polMember, ProfileServer, 17520, nil}, 17520 * time.Hour, polRefusal{}, ""},
		{"a peer default alone", "prod", short, sign{polMember, ProfilePeer, 0, nil}, 48 * time.Hour, polRefusal{}, ""},
		{"a peer default alone keeps the service's max", "prod", short, sign{polMember, ProfilePeer, 17520, nil}, 17520 * time.Hour, polRefusal{}, ""},

		{"a max alone makes the default short", "prod", maxOnly, sign{polMember, ProfileClient, 0, nil}, 24 * time.Hour, polRefusal{}, ""},
		{"a server max alone caps the server default", "prod", maxOnly, sign{polAdmin, ProfileServer, 0, nil}, 2160 * time.Hour, polRefusal{}, ""},
		{"a stored value beyond the service's max is capped by it", "prod", huge, sign{polMember, ProfileClient, 0, nil}, 17520 * time.Hour, polRefusal{}, ""},
		{"a stored value beyond the service's max allows no more", "prod", huge, sign{polMember, ProfileClient, 17521, nil}, 0, polRefusal{400, api.CodeInvalidField, "validity_hours"}, "17520"},
		{"the CA's end still caps the default", "short", longDefault, sign{polMember, ProfileClient, 0, nil}, 48 * time.Hour, polRefusal{}, ""},
		{"the CA's end still refuses a longer ask", "short", longDefault, sign{polMember, ProfileClient, 49, nil}, 0, polRefusal{400, api.CodeValidityTooLong, "validity_hours"}, ""},

		{"an allowed group", "prod", groups, sign{polMember, ProfileClient, 0, []string{"developers"}}, 720 * time.Hour, polRefusal{}, ""},
		{"every group allowed", "prod", groups, sign{polMember, ProfileClient, 0, []string{"viewers", "developers"}}, 720 * time.Hour, polRefusal{}, ""},
		{"no group at all", "prod", groups, sign{polMember, ProfileClient, 0, nil}, 720 * time.Hour, polRefusal{}, ""},
		{"one group outside the list", "prod", groups, sign{polMember, ProfileClient, 0, []string{"developers", "admins"}}, 0, polRefusal{403, api.CodeSubjectNotAllowed, "csr"}, `"admins"`},
		{"groups compare exactly", "prod", groups, sign{polMember, ProfileClient, 0, []string{"Developers"}}, 0, polRefusal{403, api.CodeSubjectNotAllowed, "csr"}, `"Developers"`},
		{"on a server certificate too", "prod", groups, sign{polMember, ProfileServer, 0, []string{"ops"}}, 0, polRefusal{403, api.CodeSubjectNotAllowed, "csr"}, `"ops"`},
		{"a listed privileged group stays refused to members", "prod", groups, sign{polMember, ProfileClient, 0, []string{"system:nodes"}}, 0, polRefusal{403, api.CodeSubjectNotAllowed, "csr"}, "admin role"},
		{"an admin is not bound by the list", "prod", groups, sign{polAdmin, ProfileClient, 0, []string{"admins"}}, 720 * time.Hour, polRefusal{}, ""},
		{"an empty list refuses every group", "prod", none, sign{polMember, ProfileClient, 0, []string{"developers"}}, 0, polRefusal{403, api.CodeSubjectNotAllowed, "csr"}, `"developers"`},
		{"an empty list still signs without a group", "prod", none, sign{polMember, ProfileClient, 0, nil}, 720 * time.Hour, polRefusal{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pol store.ClusterPolicy
			if tt.policy != nil {
				pol = *tt.policy
			}
			if err := a.st.SetPolicy(context.Background(), tt.cluster, pol); err != nil {
				t.Fatal(err)
			}
			var dns []string
			if tt.sign.profile != ProfileClient {
				dns = []string{"node.example.com"}
			}
			// A member's CN is its own user name (issue 12's subject rule).
			csr := polCSR(t, tt.sign.who.User, tt.sign.orgs, dns...)
			res, err := a.Sign(polCtx(tt.sign.who), tt.cluster, SignRequest{CSR: csr, Profile: string(tt.sign.profile), ValidityHours: tt.sign.hours})
			if tt.refused != (polRefusal{}) {
				if err == nil {
					t.Fatalf("signed, valid until %v", res.NotAfter)
				}
				if got := refusalOf(err); got != tt.refused {
					t.Fatalf("refusal %+v, want %+v (%v)", got, tt.refused, err)
				}
				if e := api.ErrorFor(err); !strings.Contains(e.Fields[0].Message, tt.says) {
					t.Fatalf("message %q does not say %q", e.Fields[0].Message, tt.says)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := res.NotAfter.Sub(polNow); got != tt.want {
				t.Fatalf("valid for %v, want %v", got, tt.want)
			}
			if cert := polParse(t, res.Certificate); !cert.NotAfter.Equal(res.NotAfter) {
				t.Fatalf("certificate NotAfter %v, answer %v", cert.NotAfter, res.NotAfter)
			}
		})
	}
}

func polParse(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPolicyAppliesOnEveryInstanceAtOnce: instance B sets a policy on the
// store instance A signs from; A's next sign follows it, although A has
// the cluster's signer cached, and a policy cleared on B is cleared on A.
func TestPolicyAppliesOnEveryInstanceAtOnce(t *testing.T) {
	a, path, master := newPolicyAuthority(t, nil)
	dbB, keysB := openInstance(t, path, master)
	b := New(dbB, keysB, Options{Now: func() time.Time { return polNow }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})

	signFor := func(hours int, orgs ...string) (SignResult, error) {
		return a.Sign(polCtx(polMember), "prod", SignRequest{CSR: polCSR(t, polMember.User, orgs), ValidityHours: hours})
	}
	if res, err := signFor(0, "ops"); err != nil || res.NotAfter.Sub(polNow) != 720*time.Hour {
		t.Fatalf("before: %v, %v", res.NotAfter, err)
	}
	if _, err := b.SetClusterPolicy(polCtx(polAdmin), "prod", ClusterPolicyRequest{
		Profiles:      map[string]ProfileLimitsRequest{"client": {MaxValidityHours: hours(12)}},
		AllowedGroups: []string{"developers"},
	}); err != nil {
		t.Fatal(err)
	}
	if res, err := signFor(0); err != nil || res.NotAfter.Sub(polNow) != 12*time.Hour {
		t.Fatalf("after: %v, %v", res.NotAfter, err)
	}
	if _, err := signFor(0, "ops"); refusalOf(err) != (polRefusal{403, api.CodeSubjectNotAllowed, "csr"}) {
		t.Fatalf("group outside the list on A: %v", err)
	}
	if _, err := signFor(13); refusalOf(err) != (polRefusal{400, api.CodeInvalidField, "validity_hours"}) {
		t.Fatalf("over the max on A: %v", err)
	}
	if got, err := a.ClusterPolicy(polCtx(polReader), "prod"); err != nil || got.Profiles["client"].MaxValidityHours != 12 {
		t.Fatalf("A's GET: %+v, %v", got, err)
	}
	if _, err := b.SetClusterPolicy(polCtx(polAdmin), "prod", ClusterPolicyRequest{}); err != nil {
		t.Fatal(err)
	}
	if res, err := signFor(0, "ops"); err != nil || res.NotAfter.Sub(polNow) != 720*time.Hour {
		t.Fatalf("cleared: %v, %v", res.NotAfter, err)
	}
}

// readCounter counts the reads of a store.
type readCounter struct {
	*sqlite.DB
	mu    sync.Mutex
	reads map[string]int
}

func (s *readCounter) count(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads[name]++
}

func (s *readCounter) take() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.reads
	s.reads = map[string]int{}
	return r
}

func (s *readCounter) Cluster(ctx context.Context, name string) (store.Cluster, error) {
	s.count("Cluster")
	return s.DB.Cluster(ctx, name)
}

func (s *readCounter) ActiveCA(ctx context.Context, cluster string) (store.Cluster, store.CAGeneration, error) {
	s.count("ActiveCA")
	return s.DB.ActiveCA(ctx, cluster)
}

func (s *readCounter) Generations(ctx context.Context, cluster string) ([]store.CAGeneration, error) {
	s.count("Generations")
	return s.DB.Generations(ctx, cluster)
}

func (s *readCounter) TrustedGenerations(ctx context.Context, cluster string, active int, now time.Time) ([]store.CAGeneration, error) {
	s.count("TrustedGenerations")
	return s.DB.TrustedGenerations(ctx, cluster, active, now)
}

func (s *readCounter) Certificates(ctx context.Context, q store.CertificateQuery) ([]store.IssuedCertificate, error) {
	s.count("Certificates")
	return s.DB.Certificates(ctx, q)
}

// TestPolicyCostsASignNoRead: a sign reads nothing before signing once
// a sign of the cluster recorded under a reading of it (the policy comes
// with the cluster row of ActiveCA and is checked again by the record), a
// policy set here makes the next sign read the cluster once, and a sign
// that the remembered policy refuses is refused only after a fresh read.
func TestPolicyCostsASignNoRead(t *testing.T) {
	var rc *readCounter
	a, _, _ := newPolicyAuthority(t, func(db *sqlite.DB) Store {
		rc = &readCounter{DB: db, reads: map[string]int{}}
		return rc
	})
	sign := func(orgs ...string) error {
		_, err := a.Sign(polCtx(polMember), "prod", SignRequest{CSR: polCSR(t, polMember.User, orgs)})
		return err
	}
	rc.take() // forget the reads of the cluster's creation
	// The first sign reads the cluster and loads its key.
	if err := sign(); err != nil {
		t.Fatal(err)
	}
	if first := rc.take(); !reflect.DeepEqual(first, map[string]int{"ActiveCA": 1}) {
		t.Fatalf("a first sign read %v", first)
	}
	if err := sign(); err != nil {
		t.Fatal(err)
	}
	if without := rc.take(); len(without) != 0 {
		t.Fatalf("a sign read %v", without)
	}
	if _, err := a.SetClusterPolicy(polCtx(polAdmin), "prod", ClusterPolicyRequest{
		Profiles:      map[string]ProfileLimitsRequest{"client": {DefaultValidityHours: hours(1)}},
		AllowedGroups: []string{"developers"},
	}); err != nil {
		t.Fatal(err)
	}
	rc.take()
	if err := sign("developers"); err != nil {
		t.Fatal(err)
	}
	if after := rc.take(); !reflect.DeepEqual(after, map[string]int{"ActiveCA": 1}) {
		t.Fatalf("the first sign after a policy change read %v", after)
	}
	if err := sign("developers"); err != nil {
		t.Fatal(err)
	}
	if with := rc.take(); len(with) != 0 {
		t.Fatalf("a sign under a policy read %v", with)
	}
	if err := sign("ops"); err == nil {
		t.Fatal("a group outside the list was signed")
	}
	if refused := rc.take(); !reflect.DeepEqual(refused, map[string]int{"ActiveCA": 1}) {
		t.Fatalf("a refused sign read %v", refused)
	}
	// The fresh reading of the refusal is remembered: a refused request
	// does not make the next sign read the store.
	if err := sign("developers"); err != nil {
		t.Fatal(err)
	}
	if next := rc.take(); len(next) != 0 {
		t.Fatalf("the sign after a refused one read %v", next)
	}
}

// TestPolicyAnswerShape: the JSON of GET and PUT, with allowed_groups
// absent when unset and [] when empty, decodes back into a PUT body (a
// client may PUT what it GOT).
func TestPolicyAnswerShape(t *testing.T) {
	a, _, _ := newPolicyAuthority(t, nil)
	for _, body := range []string{`{"allowed_groups":[]}`, `{"profiles":{"client":{"max_validity_hours":24}}}`} {
		w, err := putPolicy(t, a, polAdmin, "prod", body)
		if err != nil {
			t.Fatal(err)
		}
		hasGroups := bytes.Contains(w.Body.Bytes(), []byte(`"allowed_groups"`))
		if want := strings.Contains(body, "allowed_groups"); hasGroups != want {
			t.Fatalf("PUT %s answered %s", body, w.Body)
		}
		var again ClusterPolicyRequest
		if err := api.DecodeJSONBytes(w.Body.Bytes(), &again); err != nil {
			t.Fatalf("the answer %s is no PUT body: %v", w.Body, err)
		}
		w2, err := putPolicy(t, a, polAdmin, "prod", w.Body.String())
		if err != nil || w2.Body.String() != w.Body.String() {
			t.Fatalf("PUT of the answer: %s, %v\nwant %s", w2.Body, err, w.Body)
		}
	}
}

// BenchmarkSignUnderPolicy measures a sign on the real SQLite store and
// software custody without a policy and under one (validity and ten
// allowed groups): the difference is decoding the policy that ActiveCA
// returns with the cluster, and the group check.
func BenchmarkSignUnderPolicy(b *testing.B) {
	for _, tt := range []struct {
		name string
		pol  store.ClusterPolicy
	}{
		{"none", store.ClusterPolicy{}},
		{"policy", store.ClusterPolicy{
			Profiles: map[string]store.ProfilePolicy{
				"client": {DefaultValidityHours: 8, MaxValidityHours: 24},
				"server": {MaxValidityHours: 2160},
				"peer":   {DefaultValidityHours: 720},
			},
			AllowedGroups: []string{"g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8", "dev"},
		}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			db, k := openInstance(b, filepath.Join(b.TempDir(), "clusterkeys.db"), newMasterKey(b))
			a := New(db, k, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if _, _, err := a.CreateCA(polCtx(polAdmin), "bench", CreateRequest{ProjectID: "team-a"}); err != nil {
				b.Fatal(err)
			}
			if err := db.SetPolicy(context.Background(), "bench", tt.pol); err != nil {
				b.Fatal(err)
			}
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
				Subject: pkix.Name{CommonName: polMember.User, Organization: []string{"dev"}},
			}, key)
			if err != nil {
				b.Fatal(err)
			}
			req := SignRequest{CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}
			ctx := polCtx(polMember)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Sign(ctx, "bench", req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
