package ca

import (
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
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

// TestMagnumMicroversions: every container-infra 1.x is accepted and the
// response names the version actually served, the nearest supported one.
func TestMagnumMicroversions(t *testing.T) {
	f := newFixture(t, Options{})
	const uuid = "7ae81bb3-dec3-4289-8d6c-da80bd8001ae"
	f.mustCreate(t, uuid, CreateRequest{})
	routes := MagnumRoutes(f.a)
	tests := []struct {
		name       string
		header     string
		wantStatus int
		wantServed string
	}{
		{"no header is the minimum", "", 200, MagnumMinVersion},
		{"latest is the maximum", "container-infra latest", 200, MagnumMaxVersion},
		{"LATEST is the maximum", "container-infra LATEST", 200, MagnumMaxVersion},
		{"1.0 is served as the minimum", "container-infra 1.0", 200, MagnumMinVersion},
		{"the minimum is served as asked", "container-infra " + MagnumMinVersion, 200, MagnumMinVersion},
		{"1.5 is served as asked", "container-infra 1.5", 200, "1.5"},
		{"leading zeros are the same version", "container-infra 01.005", 200, "1.5"},
		{"the maximum is served as asked", "container-infra " + MagnumMaxVersion, 200, MagnumMaxVersion},
		{"1.12 is served as the maximum", "container-infra 1.12", 200, MagnumMaxVersion},
		{"1.99 is served as the maximum", "container-infra 1.99", 200, MagnumMaxVersion},
		{"a minor beyond an int is served as the maximum", "container-infra 1.99999999999999999999999", 200, MagnumMaxVersion},
		{"2.0 is not acceptable", "container-infra 2.0", 406, ""},
		{"0.9 is not acceptable", "container-infra 0.9", 406, ""},
		{"a negative minor is not acceptable", "container-infra 1.-1", 406, ""},
		{"a version without a minor is not acceptable", "container-infra 1", 406, ""},
		{"three components are not acceptable", "container-infra 1.2.3", 406, ""},
		{"a word is not acceptable", "container-infra one", 406, ""},
		{"another service is not acceptable", "compute 1.1", 406, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h http.Header
			if tt.header != "" {
				h = http.Header{"Openstack-Api-Version": {tt.header}}
			}
			rec := serve(t, routes, &reader, "GET", "/v1/certificates/"+uuid, "", "", h)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if got := rec.Header().Get("OpenStack-API-Minimum-Version"); got != "container-infra "+MagnumMinVersion {
				t.Errorf("OpenStack-API-Minimum-Version = %q", got)
			}
			if got := rec.Header().Get("OpenStack-API-Maximum-Version"); got != "container-infra "+MagnumMaxVersion {
				t.Errorf("OpenStack-API-Maximum-Version = %q", got)
			}
			if tt.wantStatus != http.StatusOK {
				return
			}
			if got := rec.Header().Get("OpenStack-API-Version"); got != "container-infra "+tt.wantServed {
				t.Errorf("OpenStack-API-Version = %q, want container-infra %s", got, tt.wantServed)
			}
		})
	}
}

func TestMagnumLinksNeverComeFromTheRequest(t *testing.T) {
	const uuid = "7ae81bb3-dec3-4289-8d6c-da80bd8001ae"
	forged := http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"evil.example"}, "Forwarded": {"host=evil.example;proto=https"}}
	for _, tt := range []struct {
		name, publicURL, wantBase string
	}{
		{"without --public-url the links are relative", "", ""},
		{"with --public-url the links start with it", "https://keys.example.com/ck", "https://keys.example.com/ck"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{PublicURL: tt.publicURL})
			f.mustCreate(t, uuid, CreateRequest{})
			routes := MagnumRoutes(f.a)
			for _, rq := range []struct{ method, path, body, resource string }{
				{"POST", "/v1/certificates", jsonBody(t, map[string]string{"cluster_uuid": uuid, "csr": makeCSR(t, csrOptions{cn: "alice"})}), "certificates"},
				{"GET", "/v1/certificates/" + uuid, "", "certificates"},
				{"GET", "/v1/clusters/" + uuid, "", "clusters"},
			} {
				req := httptest.NewRequest(rq.method, "http://evil.example"+rq.path, strings.NewReader(rq.body))
				req.Host = "evil.example:666"
				req.Header = forged.Clone()
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				testHandler(routes, func(*http.Request) *auth.Principal { return &member }).ServeHTTP(rec, req)
				if rec.Code >= 300 {
					t.Fatalf("%s %s: %d %s", rq.method, rq.path, rec.Code, rec.Body)
				}
				if strings.Contains(rec.Body.String(), "evil") {
					t.Fatalf("%s %s: the forged host reached the body: %s", rq.method, rq.path, rec.Body)
				}
				var body struct{ Links []Link }
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
					t.Fatal(err)
				}
				want := []Link{
					{Href: tt.wantBase + "/v1/" + rq.resource + "/" + uuid, Rel: "self"},
					{Href: tt.wantBase + "/" + rq.resource + "/" + uuid, Rel: "bookmark"},
				}
				if !slices.Equal(body.Links, want) {
					t.Errorf("%s %s: links %v, want %v", rq.method, rq.path, body.Links, want)
				}
			}
		})
	}
}

func TestMagnumRoutes(t *testing.T) {
	f := newFixture(t, Options{})
	const uuid = "7ae81bb3-dec3-4289-8d6c-da80bd8001ae"
	f.mustCreate(t, uuid, CreateRequest{})
	routes := MagnumRoutes(f.a)
	latest := http.Header{"Openstack-Api-Version": {"container-infra latest"}}
	csr := makeCSR(t, csrOptions{cn: "alice", orgs: []string{"dev"}})

	t.Run("POST signs a client certificate with Magnum's body and links", func(t *testing.T) {
		rec := serve(t, routes, &member, "POST", "/v1/certificates", "application/json", jsonBody(t, map[string]string{"cluster_uuid": uuid, "csr": csr}), latest)
		if rec.Code != http.StatusCreated {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		m := decodeMap(t, rec)
		if got := keysOf(m); !slices.Equal(got, []string{"cluster_uuid", "csr", "links", "pem"}) {
			t.Fatalf("fields %v", got)
		}
		if m["cluster_uuid"] != uuid || m["csr"] != csr {
			t.Errorf("body %v", m)
		}
		c := parseCertPEM(t, m["pem"].(string))
		if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || c.Subject.CommonName != "alice" {
			t.Errorf("certificate usages %v subject %v", c.ExtKeyUsage, c.Subject)
		}
		wantLinks := []any{
			map[string]any{"href": "/v1/certificates/" + uuid, "rel": "self"},
			map[string]any{"href": "/certificates/" + uuid, "rel": "bookmark"},
		}
		if got, _ := json.Marshal(m["links"]); string(got) != jsonBody(t, wantLinks) {
			t.Errorf("links %s", got)
		}
		if v := rec.Header().Get("OpenStack-API-Version"); v != "container-infra "+MagnumMaxVersion {
			t.Errorf("OpenStack-API-Version = %q", v)
		}
	})

	t.Run("GET returns the CA PEM", func(t *testing.T) {
		rec := serve(t, routes, &reader, "GET", "/v1/certificates/"+uuid, "", "", nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		m := decodeMap(t, rec)
		if got := keysOf(m); !slices.Equal(got, []string{"cluster_uuid", "links", "pem"}) {
			t.Fatalf("fields %v", got)
		}
		if c := parseCertPEM(t, m["pem"].(string)); !c.IsCA {
			t.Error("pem is not the CA")
		}
		if v := rec.Header().Get("OpenStack-API-Version"); v != "container-infra "+MagnumMinVersion {
			t.Errorf("without a version header OpenStack-API-Version = %q, want the minimum", v)
		}
	})

	t.Run("GET of the cluster gives the UUID openstack coe ca reads first", func(t *testing.T) {
		rec := serve(t, routes, &reader, "GET", "/v1/clusters/"+uuid, "", "", latest)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		m := decodeMap(t, rec)
		if got := keysOf(m); !slices.Equal(got, []string{"links", "name", "uuid"}) || m["uuid"] != uuid {
			t.Fatalf("body %v", m)
		}
		if got, _ := json.Marshal(m["links"]); !strings.Contains(string(got), `"/v1/clusters/`+uuid+`"`) {
			t.Errorf("links %s", got)
		}
	})

	t.Run("PATCH without a body rotates the CA with 202 and no grace", func(t *testing.T) {
		before, _ := f.a.CA(as(member), uuid)
		rec := serve(t, routes, &member, "PATCH", "/v1/certificates/"+uuid, "application/octet-stream", "", latest)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if m := decodeMap(t, rec); m["uuid"] != uuid || len(m) != 1 {
			t.Errorf("body %v", m)
		}
		after, _ := f.a.CA(as(member), uuid)
		if after.Generation != before.Generation+1 || after.TrustBundle != after.Certificate {
			t.Errorf("generation %d → %d, bundle of %d", before.Generation, after.Generation, strings.Count(after.TrustBundle, "BEGIN"))
		}
	})

	tests := []struct {
		name       string
		who        *auth.Principal
		method     string
		path       string
		body       string
		header     http.Header
		wantStatus int
		wantCode   string
	}{
		{"the legacy bay_uuid field is accepted", &member, "POST", "/v1/certificates", jsonBody(t, map[string]string{"bay_uuid": uuid, "csr": csr}), nil, 201, ""},
		{"ca_cert_type kubernetes is accepted", &member, "POST", "/v1/certificates", jsonBody(t, map[string]string{"cluster_uuid": uuid, "csr": csr, "ca_cert_type": "kubernetes"}), nil, 201, ""},
		{"ca_cert_type etcd is refused", &member, "POST", "/v1/certificates", jsonBody(t, map[string]string{"cluster_uuid": uuid, "csr": csr, "ca_cert_type": "etcd"}), nil, 400, api.CodeInvalidField},
		{"an unknown cluster in the body is a 400 as in Magnum", &member, "POST", "/v1/certificates", jsonBody(t, map[string]string{"cluster_uuid": "nope", "csr": csr}), nil, 400, api.CodeCANotFound},
		{"a missing cluster_uuid is refused", &member, "POST", "/v1/certificates", jsonBody(t, map[string]string{"csr": csr}), nil, 400, api.CodeInvalidField},
		{"the policy applies: system:masters needs admin", &member, "POST", "/v1/certificates", jsonBody(t, map[string]string{"cluster_uuid": uuid, "csr": makeCSR(t, csrOptions{cn: "x", orgs: []string{"system:masters"}})}), nil, 403, api.CodeSystemMasters},
		{"GET of an unknown cluster is a 404", &member, "GET", "/v1/certificates/nope", "", nil, 404, api.CodeCANotFound},
		{"GET of another project's cluster is forbidden", &otherMember, "GET", "/v1/clusters/" + uuid, "", nil, 403, api.CodeForbidden},
		{"PATCH by a reader is forbidden", &reader, "PATCH", "/v1/certificates/" + uuid, "", nil, 403, api.CodeForbidden},
		{"version 1.5 is accepted", &reader, "GET", "/v1/certificates/" + uuid, "", http.Header{"Openstack-Api-Version": {"container-infra 1.5"}}, 200, ""},
		{"version 1.0 is accepted", &reader, "GET", "/v1/certificates/" + uuid, "", http.Header{"Openstack-Api-Version": {"container-infra 1.0"}}, 200, ""},
		{"a 1.x above the maximum is accepted", &reader, "GET", "/v1/certificates/" + uuid, "", http.Header{"Openstack-Api-Version": {"container-infra 1.99"}}, 200, ""},
		{"version 2.0 is not acceptable", &reader, "GET", "/v1/certificates/" + uuid, "", http.Header{"Openstack-Api-Version": {"container-infra 2.0"}}, 406, CodeUnsupportedVersion},
		{"another service's version is not acceptable", &reader, "GET", "/v1/certificates/" + uuid, "", http.Header{"Openstack-Api-Version": {"compute 2.1"}}, 406, CodeUnsupportedVersion},
		{"a malformed version is not acceptable", &reader, "GET", "/v1/certificates/" + uuid, "", http.Header{"Openstack-Api-Version": {"container-infra one"}}, 406, CodeUnsupportedVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := ""
			if tt.body != "" {
				ct = "application/json"
			}
			rec := serve(t, routes, tt.who, tt.method, tt.path, ct, tt.body, tt.header)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if rec.Header().Get("OpenStack-API-Maximum-Version") != "container-infra "+MagnumMaxVersion {
				t.Errorf("no OpenStack-API-Maximum-Version header")
			}
			if tt.wantCode == "" {
				return
			}
			var body struct {
				Errors []api.MagnumError `json:"errors"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 {
				t.Fatalf("not a Magnum error body: %s", rec.Body)
			}
			e := body.Errors[0]
			if e.Status != tt.wantStatus || !strings.HasPrefix(e.Detail, tt.wantCode+": ") || e.Title == "" {
				t.Fatalf("error %+v, want %s", e, tt.wantCode)
			}
		})
	}
}
