package magnum

import (
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
)

// TestMicroversions: every container-infra 1.x is accepted and the
// response names the version actually served, the nearest supported one.
func TestMicroversions(t *testing.T) {
	f := newFixture(t, "")
	tests := []struct {
		name       string
		header     string
		wantStatus int
		wantServed string
	}{
		{"no header is the minimum", "", 200, MinVersion},
		{"latest is the maximum", "container-infra latest", 200, MaxVersion},
		{"LATEST is the maximum", "container-infra LATEST", 200, MaxVersion},
		{"1.0 is served as the minimum", "container-infra 1.0", 200, MinVersion},
		{"the minimum is served as asked", "container-infra " + MinVersion, 200, MinVersion},
		{"1.5 is served as asked", "container-infra 1.5", 200, "1.5"},
		{"leading zeros are the same version", "container-infra 01.005", 200, "1.5"},
		{"the maximum is served as asked", "container-infra " + MaxVersion, 200, MaxVersion},
		{"1.12 is served as the maximum", "container-infra 1.12", 200, MaxVersion},
		{"1.99 is served as the maximum", "container-infra 1.99", 200, MaxVersion},
		{"a minor beyond an int is served as the maximum", "container-infra 1.99999999999999999999999", 200, MaxVersion},
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
			rec := f.do(t, "reader", "GET", "/v1/certificates/"+uuid, "", h)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if got := rec.Header().Get("OpenStack-API-Minimum-Version"); got != "container-infra "+MinVersion {
				t.Errorf("OpenStack-API-Minimum-Version = %q", got)
			}
			if got := rec.Header().Get("OpenStack-API-Maximum-Version"); got != "container-infra "+MaxVersion {
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

func TestLinksNeverComeFromTheRequest(t *testing.T) {
	forged := http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"evil.example"}, "Forwarded": {"host=evil.example;proto=https"}}
	for _, tt := range []struct {
		name, publicURL, wantBase string
	}{
		{"without --public-url the links are relative", "", ""},
		{"with --public-url the links start with it", "https://keys.example.com/ck", "https://keys.example.com/ck"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.publicURL)
			for _, rq := range []struct{ method, path, body, resource string }{
				{"POST", "/v1/certificates", asJSON(t, map[string]string{"cluster_uuid": uuid, "csr": newCSR(t, "alice")}), "certificates"},
				{"GET", "/v1/certificates/" + uuid, "", "certificates"},
				{"GET", "/v1/clusters/" + uuid, "", "clusters"},
			} {
				req := httptest.NewRequest(rq.method, "http://evil.example"+rq.path, strings.NewReader(rq.body))
				req.Host = "evil.example:666"
				req.Header = forged.Clone()
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Auth-Token", "member")
				rec := httptest.NewRecorder()
				f.handler.ServeHTTP(rec, req)
				if rec.Code >= 300 {
					t.Fatalf("%s %s: %d %s", rq.method, rq.path, rec.Code, rec.Body)
				}
				if strings.Contains(rec.Body.String(), "evil") {
					t.Fatalf("%s %s: the forged host reached the body: %s", rq.method, rq.path, rec.Body)
				}
				m, _ := object(t, rec)
				want := asJSON(t, []Link{
					{Href: tt.wantBase + "/v1/" + rq.resource + "/" + uuid, Rel: "self"},
					{Href: tt.wantBase + "/" + rq.resource + "/" + uuid, Rel: "bookmark"},
				})
				if got := asJSON(t, m["links"]); got != want {
					t.Errorf("%s %s: links %s, want %s", rq.method, rq.path, got, want)
				}
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	f := newFixture(t, "")
	latest := http.Header{"Openstack-Api-Version": {"container-infra latest"}}
	csr := newCSR(t, "alice", "dev")

	t.Run("POST signs a client certificate with Magnum's body and links", func(t *testing.T) {
		rec := f.do(t, "member", "POST", "/v1/certificates", asJSON(t, map[string]string{"cluster_uuid": uuid, "csr": csr}), latest)
		if rec.Code != http.StatusCreated {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		m, fields := object(t, rec)
		if !slices.Equal(fields, []string{"cluster_uuid", "csr", "links", "pem"}) {
			t.Fatalf("fields %v", fields)
		}
		if m["cluster_uuid"] != uuid || m["csr"] != csr {
			t.Errorf("body %v", m)
		}
		c := certs(t, m["pem"].(string))[0]
		if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || c.Subject.CommonName != "alice" {
			t.Errorf("certificate usages %v subject %v", c.ExtKeyUsage, c.Subject)
		}
		wantLinks := []any{
			map[string]any{"href": "/v1/certificates/" + uuid, "rel": "self"},
			map[string]any{"href": "/certificates/" + uuid, "rel": "bookmark"},
		}
		if got := asJSON(t, m["links"]); got != asJSON(t, wantLinks) {
			t.Errorf("links %s", got)
		}
		if v := rec.Header().Get("OpenStack-API-Version"); v != "container-infra "+MaxVersion {
			t.Errorf("OpenStack-API-Version = %q", v)
		}
	})

	t.Run("GET returns the CA PEM", func(t *testing.T) {
		rec := f.do(t, "reader", "GET", "/v1/certificates/"+uuid, "", nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		m, fields := object(t, rec)
		if !slices.Equal(fields, []string{"cluster_uuid", "links", "pem"}) {
			t.Fatalf("fields %v", fields)
		}
		if cs := certs(t, m["pem"].(string)); len(cs) != 1 || !cs[0].IsCA {
			t.Error("pem is not the CA")
		}
		if v := rec.Header().Get("OpenStack-API-Version"); v != "container-infra "+MinVersion {
			t.Errorf("without a version header OpenStack-API-Version = %q, want the minimum", v)
		}
	})

	t.Run("GET of the cluster gives the UUID openstack coe ca reads first", func(t *testing.T) {
		rec := f.do(t, "reader", "GET", "/v1/clusters/"+uuid, "", latest)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		m, fields := object(t, rec)
		if !slices.Equal(fields, []string{"links", "name", "uuid"}) || m["uuid"] != uuid {
			t.Fatalf("body %v", m)
		}
		if got := asJSON(t, m["links"]); !strings.Contains(got, `"/v1/clusters/`+uuid+`"`) {
			t.Errorf("links %s", got)
		}
	})

	t.Run("PATCH without a body rotates the CA with 202 and no grace", func(t *testing.T) {
		ctx := auth.WithPrincipal(t.Context(), principals["member"])
		before, _ := f.ca.CA(ctx, uuid)
		h := latest.Clone()
		h.Set("Content-Type", "application/octet-stream")
		rec := f.do(t, "member", "PATCH", "/v1/certificates/"+uuid, "", h)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if m, _ := object(t, rec); m["uuid"] != uuid || len(m) != 1 {
			t.Errorf("body %v", m)
		}
		after, _ := f.ca.CA(ctx, uuid)
		if after.Generation != before.Generation+1 || after.TrustBundle != after.Certificate {
			t.Errorf("generation %d → %d, bundle of %d", before.Generation, after.Generation, strings.Count(after.TrustBundle, "BEGIN"))
		}
	})

	version := func(v string) http.Header { return http.Header{"Openstack-Api-Version": {"container-infra " + v}} }
	tests := []struct {
		name       string
		token      string
		method     string
		path       string
		body       string
		header     http.Header
		wantStatus int
		wantCode   string
	}{
		{"the legacy bay_uuid field is accepted", "member", "POST", "/v1/certificates", asJSON(t, map[string]string{"bay_uuid": uuid, "csr": csr}), nil, 201, ""},
		{"ca_cert_type kubernetes is accepted", "member", "POST", "/v1/certificates", asJSON(t, map[string]string{"cluster_uuid": uuid, "csr": csr, "ca_cert_type": "kubernetes"}), nil, 201, ""},
		{"ca_cert_type etcd is refused", "member", "POST", "/v1/certificates", asJSON(t, map[string]string{"cluster_uuid": uuid, "csr": csr, "ca_cert_type": "etcd"}), nil, 400, api.CodeInvalidField},
		{"an unknown cluster in the body is a 400 as in Magnum", "member", "POST", "/v1/certificates", asJSON(t, map[string]string{"cluster_uuid": "nope", "csr": csr}), nil, 400, api.CodeCANotFound},
		{"a missing cluster_uuid is refused", "member", "POST", "/v1/certificates", asJSON(t, map[string]string{"csr": csr}), nil, 400, api.CodeInvalidField},
		{"the policy applies: system:masters needs admin", "member", "POST", "/v1/certificates", asJSON(t, map[string]string{"cluster_uuid": uuid, "csr": newCSR(t, "x", "system:masters")}), nil, 403, api.CodeSystemMasters},
		{"GET of an unknown cluster is a 404", "member", "GET", "/v1/certificates/nope", "", nil, 404, api.CodeCANotFound},
		{"GET of another project's cluster is forbidden", "other", "GET", "/v1/clusters/" + uuid, "", nil, 403, api.CodeForbidden},
		{"PATCH by a reader is forbidden", "reader", "PATCH", "/v1/certificates/" + uuid, "", nil, 403, api.CodeForbidden},
		{"version 1.5 is accepted", "reader", "GET", "/v1/certificates/" + uuid, "", version("1.5"), 200, ""},
		{"version 1.0 is accepted", "reader", "GET", "/v1/certificates/" + uuid, "", version("1.0"), 200, ""},
		{"a 1.x above the maximum is accepted", "reader", "GET", "/v1/certificates/" + uuid, "", version("1.99"), 200, ""},
		{"version 2.0 is not acceptable", "reader", "GET", "/v1/certificates/" + uuid, "", version("2.0"), 406, CodeUnsupportedVersion},
		{"another service's version is not acceptable", "reader", "GET", "/v1/certificates/" + uuid, "", http.Header{"Openstack-Api-Version": {"compute 2.1"}}, 406, CodeUnsupportedVersion},
		{"a malformed version is not acceptable", "reader", "GET", "/v1/certificates/" + uuid, "", version("one"), 406, CodeUnsupportedVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.do(t, tt.token, tt.method, tt.path, tt.body, tt.header)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if rec.Header().Get("OpenStack-API-Maximum-Version") != "container-infra "+MaxVersion {
				t.Errorf("no OpenStack-API-Maximum-Version header")
			}
			if tt.wantCode == "" {
				return
			}
			if e := magnumError(t, rec); e.Status != tt.wantStatus || !strings.HasPrefix(e.Detail, tt.wantCode+": ") || e.Title == "" {
				t.Fatalf("error %+v, want %s", e, tt.wantCode)
			}
		})
	}
}

// FuzzVersion: any OpenStack-API-Version header either selects a
// supported microversion or is refused with 406, and every
// "container-infra 1.<digits>" is accepted.
func FuzzVersion(f *testing.F) {
	for _, s := range []string{"", "container-infra latest", "container-infra 1.5", "container-infra 1.99",
		"compute 2.1", "container-infra 1", "container-infra -1.-1", "container-infra 01.010",
		"container-infra 1.0", "container-infra 2.0", "container-infra 1.99999999999999999999999"} {
		f.Add(s)
	}
	lo, _ := parseMicroversion(MinVersion)
	hi, _ := parseMicroversion(MaxVersion)
	digits := func(s string) bool {
		return s != "" && strings.Trim(s, "0123456789") == ""
	}
	f.Fuzz(func(t *testing.T, h string) {
		v, err := version(h)
		fields := strings.Fields(h)
		if len(fields) == 2 && fields[0] == serviceType {
			major, minor, _ := strings.Cut(fields[1], ".")
			if digits(major) && strings.TrimLeft(major, "0") == "1" && digits(minor) && err != nil {
				t.Fatalf("header %q refused: %v", h, err)
			}
		}
		if err != nil {
			var e *api.Error
			if !errors.As(err, &e) || e.Status != http.StatusNotAcceptable || e.Code != CodeUnsupportedVersion {
				t.Fatalf("refusal is not a 406: %v", err)
			}
			return
		}
		got, ok := parseMicroversion(v)
		if !ok || got[0] != lo[0] || got[1] < lo[1] || got[1] > hi[1] {
			t.Fatalf("header %q selected unsupported version %q", h, v)
		}
	})
}
