package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// clusterPolicy is the answer of GET and PUT /v1/clusters/{c}/policy.
type clusterPolicy struct {
	Profiles map[string]struct {
		Default int `json:"default_validity_hours"`
		Max     int `json:"max_validity_hours"`
	} `json:"profiles"`
	AllowedGroups *[]string `json:"allowed_groups"`
}

// validity returns how long a signed certificate is valid, from the sign
// answer's not_after and the certificate's own NotBefore (backdated by a
// minute for clock skew).
func validity(t *testing.T, s signed) time.Duration {
	t.Helper()
	c := parseCert(t, s.Certificate)
	na, err := time.Parse(time.RFC3339, s.NotAfter)
	if err != nil {
		t.Fatal(err)
	}
	if !na.Equal(c.NotAfter) {
		t.Fatalf("not_after %v, certificate %v", na, c.NotAfter)
	}
	return c.NotAfter.Sub(c.NotBefore) - time.Minute
}

// problemField returns the field of a problem+json body's first field
// error, and its message.
func problemField(t *testing.T, r response) (field, message string) {
	t.Helper()
	var p struct {
		Errors []struct {
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	r.json(t, &p)
	if len(p.Errors) == 0 {
		t.Fatalf("no field errors in %s", r.Body)
	}
	return p.Errors[0].Field, p.Errors[0].Message
}

// TestClusterPolicy: through the real localrun binary, an admin sets a
// cluster's signing policy; a member's certificates follow its default
// validity, a longer ask and a group outside the list are refused
// (natively and through Magnum's route); readers see the policy and may
// not set it; a second instance on the same store applies it at once.
func TestClusterPolicy(t *testing.T) {
	s := startServer(t, serverOpts{})
	const cluster = "5b1f0c2e-cluster-policy-e2e"
	createCA(t, s, memberToken, cluster, nil)
	policyURL := s.URL + "/v1/clusters/" + cluster + "/policy"
	native := s.URL + "/v1/clusters/" + cluster + "/certificates"
	magnum := s.URL + "/v1/certificates"
	memberCSR := func(groups ...string) string { return newCSR(t, p256(t), "alice", groups) }

	t.Run("without a policy GET shows the service's defaults", func(t *testing.T) {
		r := do(t, "GET", policyURL, readerToken, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("GET: %d %s", r.Status, r.Body)
		}
		var p clusterPolicy
		r.json(t, &p)
		if c := p.Profiles["client"]; c.Default != 720 || c.Max != 17520 || p.Profiles["server"].Default != 8760 || p.AllowedGroups != nil {
			t.Fatalf("defaults: %s", r.Body)
		}
		if v := validity(t, sign(t, s, memberToken, cluster, map[string]string{"csr": memberCSR("anything")})); v != 720*time.Hour {
			t.Fatalf("a client certificate is valid %v without a policy, want 720h", v)
		}
	})

	body := map[string]any{
		"profiles": map[string]any{
			"client": map[string]int{"default_validity_hours": 8, "max_validity_hours": 24},
			"server": map[string]int{"max_validity_hours": 2160},
		},
		"allowed_groups": []string{"developers", "viewers"},
	}
	t.Run("a member and a reader may not set it", func(t *testing.T) {
		for _, tok := range []string{memberToken, readerToken, otherToken} {
			if r := do(t, "PUT", policyURL, tok, body); r.Status != http.StatusForbidden || r.problemCode(t) != "forbidden" {
				t.Errorf("PUT: %d %s, want 403 forbidden", r.Status, r.Body)
			}
		}
		if r := do(t, "GET", policyURL, otherToken, nil); r.Status != http.StatusForbidden {
			t.Errorf("GET from another project: %d %s, want 403", r.Status, r.Body)
		}
		if r := do(t, "GET", s.URL+"/v1/clusters/no-such-cluster/policy", adminToken, nil); r.Status != http.StatusNotFound || r.problemCode(t) != "ca_not_found" {
			t.Errorf("GET of an unknown cluster: %d %s, want 404 ca_not_found", r.Status, r.Body)
		}
	})

	t.Run("bad policies are refused naming the field", func(t *testing.T) {
		for _, tt := range []struct {
			body  string
			code  string
			field string
		}{
			{`{"profiles":{"admin":{"max_validity_hours":1}}}`, "invalid_field", "profiles.admin"},
			{`{"profiles":{"client":{"default_validity_hours":48,"max_validity_hours":24}}}`, "invalid_field", "profiles.client.default_validity_hours"},
			{`{"profiles":{"peer":{"max_validity_hours":17521}}}`, "invalid_field", "profiles.peer.max_validity_hours"},
			{`{"profiles":{"server":{"max_validity_hours":0}}}`, "invalid_field", "profiles.server.max_validity_hours"},
			{`{"allowed_groups":["ok","bell\u0007"]}`, "subject_not_allowed", "allowed_groups[1]"},
			{`{"allowed_groups":["` + strings.Repeat("g", 65) + `"]}`, "invalid_field", "allowed_groups[0]"},
			{`{"allowed_groups":[` + strings.Repeat(`"g",`, 64) + `"h"]}`, "invalid_field", "allowed_groups"},
			{`{"profiles":{"client":{"max_hours":24}}}`, "unknown_field", "profiles.client.max_hours"},
		} {
			r := do(t, "PUT", policyURL, adminToken, tt.body)
			if r.Status != http.StatusBadRequest || r.problemCode(t) != tt.code {
				t.Errorf("PUT %s: %d %s, want 400 %s", tt.body, r.Status, r.Body, tt.code)
				continue
			}
			if f, _ := problemField(t, r); f != tt.field {
				t.Errorf("PUT %s: field %q, want %q", tt.body, f, tt.field)
			}
		}
	})

	t.Run("an admin sets it and gets the effective policy", func(t *testing.T) {
		r := do(t, "PUT", policyURL, adminToken, body)
		if r.Status != http.StatusOK {
			t.Fatalf("PUT: %d %s", r.Status, r.Body)
		}
		want := `{"profiles":{"client":{"default_validity_hours":8,"max_validity_hours":24},"peer":{"default_validity_hours":8760,"max_validity_hours":17520},"server":{"default_validity_hours":2160,"max_validity_hours":2160}},"allowed_groups":["developers","viewers"]}`
		if got := strings.TrimSpace(string(r.Body)); got != want {
			t.Fatalf("PUT answered %s\nwant %s", got, want)
		}
		for _, tok := range []string{readerToken, memberToken, adminToken} {
			g := do(t, "GET", policyURL, tok, nil)
			if g.Status != http.StatusOK || strings.TrimSpace(string(g.Body)) != want {
				t.Fatalf("GET: %d %s\nwant %s", g.Status, g.Body, want)
			}
		}
	})

	t.Run("a member's sign follows it", func(t *testing.T) {
		if v := validity(t, sign(t, s, memberToken, cluster, map[string]string{"csr": memberCSR("developers")})); v != 8*time.Hour {
			t.Errorf("default validity %v, want the policy's 8h", v)
		}
		if v := validity(t, sign(t, s, memberToken, cluster, map[string]any{"csr": memberCSR(), "validity_hours": 24})); v != 24*time.Hour {
			t.Errorf("validity %v, want the 24h asked for", v)
		}
		r := do(t, "POST", native, memberToken, map[string]any{"csr": memberCSR(), "validity_hours": 25})
		if r.Status != http.StatusBadRequest || r.problemCode(t) != "invalid_field" {
			t.Fatalf("over the max: %d %s, want 400 invalid_field", r.Status, r.Body)
		}
		if f, msg := problemField(t, r); f != "validity_hours" || !strings.Contains(msg, "24") {
			t.Errorf("over the max: field %q message %q", f, msg)
		}
		r = do(t, "POST", native, adminToken, map[string]any{"csr": newCSR(t, p256(t), "ops-robot", nil), "validity_hours": 25})
		if r.Status != http.StatusBadRequest || r.problemCode(t) != "invalid_field" {
			t.Errorf("an admin over the max: %d %s, want 400 invalid_field", r.Status, r.Body)
		}
		r = do(t, "POST", native, memberToken, map[string]any{"csr": memberCSR("developers", "admins")})
		if r.Status != http.StatusForbidden || r.problemCode(t) != "subject_not_allowed" {
			t.Fatalf("a group outside the list: %d %s, want 403 subject_not_allowed", r.Status, r.Body)
		}
		if f, msg := problemField(t, r); f != "csr" || !strings.Contains(msg, `"admins"`) {
			t.Errorf("a group outside the list: field %q message %q, want csr naming \"admins\"", f, msg)
		}
		// Magnum's route signs through the same policy.
		r = do(t, "POST", magnum, memberToken, map[string]string{"cluster_uuid": cluster, "csr": memberCSR("admins")})
		var m struct {
			Errors []struct {
				Title string `json:"title"`
			} `json:"errors"`
		}
		r.json(t, &m)
		if r.Status != http.StatusForbidden || len(m.Errors) != 1 || !strings.HasPrefix(m.Errors[0].Title, "subject_not_allowed:") {
			t.Errorf("magnum, a group outside the list: %d %s, want 403 subject_not_allowed", r.Status, r.Body)
		}
		r = do(t, "POST", magnum, memberToken, map[string]string{"cluster_uuid": cluster, "csr": memberCSR("viewers")})
		if r.Status != http.StatusCreated {
			t.Fatalf("magnum, an allowed group: %d %s", r.Status, r.Body)
		}
		var mc struct{ PEM string }
		r.json(t, &mc)
		if c := parseCert(t, mc.PEM); c.NotAfter.Sub(c.NotBefore)-time.Minute != 8*time.Hour {
			t.Errorf("magnum certificate valid %v, want the policy's 8h", c.NotAfter.Sub(c.NotBefore)-time.Minute)
		}
		// An admin is not bound by the list; the server profile's max
		// alone made its default short.
		out := sign(t, s, adminToken, cluster, map[string]string{"csr": newCSR(t, p256(t), "api", []string{"admins"}, "api.example.com"), "profile": "server"})
		if v := validity(t, out); v != 2160*time.Hour {
			t.Errorf("server certificate valid %v, want 2160h", v)
		}
	})

	t.Run("a second instance on the same store applies it at once", func(t *testing.T) {
		s2 := startServer(t, serverOpts{stateDir: s.StateDir})
		tighter := map[string]any{"profiles": map[string]any{"client": map[string]int{"max_validity_hours": 2}}, "allowed_groups": []string{}}
		if r := do(t, "PUT", s2.URL+"/v1/clusters/"+cluster+"/policy", adminToken, tighter); r.Status != http.StatusOK {
			t.Fatalf("PUT on the second instance: %d %s", r.Status, r.Body)
		}
		var p clusterPolicy
		r := do(t, "GET", policyURL, readerToken, nil)
		r.json(t, &p)
		if p.Profiles["client"].Max != 2 || p.Profiles["client"].Default != 2 || p.AllowedGroups == nil || len(*p.AllowedGroups) != 0 {
			t.Fatalf("the first instance shows %s", r.Body)
		}
		if v := validity(t, sign(t, s, memberToken, cluster, map[string]string{"csr": memberCSR()})); v != 2*time.Hour {
			t.Errorf("the first instance signed for %v, want the new 2h", v)
		}
		if r := do(t, "POST", native, memberToken, map[string]string{"csr": memberCSR("developers")}); r.Status != http.StatusForbidden {
			t.Errorf("the first instance signed a group the empty list refuses: %d %s", r.Status, r.Body)
		}
		// {} clears it, on either instance.
		if r := do(t, "PUT", s2.URL+"/v1/clusters/"+cluster+"/policy", adminToken, `{}`); r.Status != http.StatusOK {
			t.Fatalf("PUT {}: %d %s", r.Status, r.Body)
		}
		if v := validity(t, sign(t, s, memberToken, cluster, map[string]string{"csr": memberCSR("anything")})); v != 720*time.Hour {
			t.Errorf("after clearing the first instance signed for %v, want 720h", v)
		}
	})
}
