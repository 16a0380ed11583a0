package ca

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
)

var rfc3339UTC = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)

func jsonBody(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNativeRoutes(t *testing.T) {
	f := newFixture(t, Options{})
	routes := Routes(f.a)
	const js = "application/json"
	caFields := []string{"certificate", "cluster", "fingerprint_sha256", "generation", "key_algorithm", "not_after", "not_before", "trust_bundle"}

	t.Run("PUT creates the CA with 201, the resource's exact fields and RFC 3339 UTC times", func(t *testing.T) {
		rec := serve(t, routes, &member, "PUT", "/v1/clusters/c1/ca", js, `{"key_algorithm":"ecdsa-p256"}`, nil)
		if rec.Code != http.StatusCreated {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		m := decodeMap(t, rec)
		if got := keysOf(m); !slices.Equal(got, caFields) {
			t.Fatalf("fields %v, want %v", got, caFields)
		}
		for _, k := range []string{"not_before", "not_after"} {
			if s, _ := m[k].(string); !rfc3339UTC.MatchString(s) {
				t.Errorf("%s = %q, want RFC 3339 UTC", k, s)
			}
		}
		if m["generation"] != float64(1) || m["cluster"] != "c1" || m["key_algorithm"] != "ecdsa-p256" {
			t.Errorf("resource %v", m)
		}
	})
	t.Run("PUT again with an empty body answers 200", func(t *testing.T) {
		if rec := serve(t, routes, &member, "PUT", "/v1/clusters/c1/ca", "", "", nil); rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})

	csr := makeCSR(t, csrOptions{cn: "alice"})
	tests := []struct {
		name       string
		who        *auth.Principal
		method     string
		path       string
		body       string
		wantStatus int
		wantCode   string
		wantFields []string
	}{
		{"GET shows the CA", &reader, "GET", "/v1/clusters/c1/ca", "", 200, "", caFields},
		{"PUT with other parameters is ca_exists", &member, "PUT", "/v1/clusters/c1/ca", `{"key_algorithm":"rsa-2048"}`, 409, api.CodeCAExists, nil},
		{"PUT with an unknown field is refused", &member, "PUT", "/v1/clusters/c2/ca", `{"algorithm":"x"}`, 400, api.CodeUnknownField, nil},
		{"GET of an unknown cluster is ca_not_found", &member, "GET", "/v1/clusters/zz/ca", "", 404, api.CodeCANotFound, nil},
		{"GET of another project's cluster is forbidden", &otherMember, "GET", "/v1/clusters/c1/ca", "", 403, api.CodeForbidden, nil},
		{"POST certificates signs with 201", &member, "POST", "/v1/clusters/c1/certificates", jsonBody(t, SignRequest{CSR: csr, Profile: "client", ValidityHours: 24}), 201, "",
			[]string{"ca_certificate", "ca_generation", "certificate", "not_after", "serial"}},
		{"POST certificates without a body is malformed", &member, "POST", "/v1/clusters/c1/certificates", "", 400, api.CodeMalformedJSON, nil},
		{"POST certificates with a bad CSR reports its code", &member, "POST", "/v1/clusters/c1/certificates", `{"csr":"nope"}`, 400, api.CodeInvalidCSR, nil},
		{"POST certificates with a string validity is invalid", &member, "POST", "/v1/clusters/c1/certificates", `{"csr":"x","validity_hours":"1"}`, 400, api.CodeInvalidField, nil},
		{"a stale expected generation is a 409", &member, "POST", "/v1/clusters/c1/ca/rekey", `{"expected_generation":5}`, 409, api.CodeGenerationMismatch, nil},
		{"rekey with an empty body rotates", &member, "POST", "/v1/clusters/c1/ca/rekey", "", 200, "", caFields},
		{"rekey with the current generation and a grace rotates", &member, "POST", "/v1/clusters/c1/ca/rekey", `{"expected_generation":2,"grace_period_seconds":60}`, 200, "", caFields},
		{"a request without a principal is unauthorized", nil, "GET", "/v1/clusters/c1/ca", "", 401, api.CodeUnauthorized, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := ""
			if tt.body != "" {
				ct = js
			}
			rec := serve(t, routes, tt.who, tt.method, tt.path, ct, tt.body, nil)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			m := decodeMap(t, rec)
			if tt.wantCode != "" {
				if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" || m["code"] != tt.wantCode {
					t.Fatalf("error %s %v, want code %s", ct, m, tt.wantCode)
				}
				return
			}
			if got := keysOf(m); !slices.Equal(got, tt.wantFields) {
				t.Fatalf("fields %v, want %v", got, tt.wantFields)
			}
		})
	}
}
