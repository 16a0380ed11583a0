package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
)

const (
	adminToken  = "admin-token-0123456789"
	memberToken = "member-token-0123456789"
)

type echoReq struct {
	Name string `json:"name"`
}

func newTestGateway(t *testing.T, ready func(context.Context) error) *Gateway {
	t.Helper()
	tf, err := auth.ParseTokenFile(strings.NewReader(
		adminToken + ",alice,p0,\"admin\"\n" + memberToken + ",bob,p1,\"member\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	routes := []api.Route{
		{Pattern: "POST /v1/echo", Name: "echo", MaxBody: 1024, Handler: func(w http.ResponseWriter, r *http.Request) error {
			var req echoReq
			if err := api.DecodeJSON(r, &req, false); err != nil {
				return err
			}
			p, _ := auth.FromContext(r.Context())
			return api.WriteJSON(w, http.StatusOK, map[string]string{"name": req.Name, "user": p.User})
		}},
		{Pattern: "GET /v1/things/{id}", Name: "thing", Handler: func(w http.ResponseWriter, r *http.Request) error {
			switch r.PathValue("id") {
			case "missing":
				return errors.Join(errors.New("lookup thing"), api.ErrNotFound)
			case "panic":
				panic("secret-material-in-panic")
			case "down":
				return errors.Join(errors.New("dial db"), api.ErrUnavailable)
			}
			return api.WriteJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id")})
		}},
		{Pattern: "POST /v1/certificates", Name: "magnum", Format: api.MagnumErrors, Handler: func(w http.ResponseWriter, r *http.Request) error {
			return api.Invalid(api.CodeInvalidCSR, "csr", "not a CSR")
		}},
	}
	g, err := New(Config{Auth: tf, Ready: ready}, routes...)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGatewayErrors(t *testing.T) {
	g := newTestGateway(t, nil)
	tests := []struct {
		name        string
		method      string
		path        string
		token       string
		contentType string
		body        string
		wantStatus  int
		wantCode    string
		wantMagnum  bool
	}{
		{"a request without credentials is 401", "POST", "/v1/echo", "", "", `{"name":"x"}`, 401, api.CodeUnauthorized, false},
		{"an unknown token is 401", "POST", "/v1/echo", "wrong-token-0123456789", "", `{"name":"x"}`, 401, api.CodeUnauthorized, false},
		{"a known token passes", "POST", "/v1/echo", adminToken, "application/json", `{"name":"x"}`, 200, "", false},
		{"an unknown field is refused", "POST", "/v1/echo", adminToken, "", `{"name":"x","extra":1}`, 400, api.CodeUnknownField, false},
		{"a field name in another case is refused", "POST", "/v1/echo", adminToken, "", `{"Name":"x"}`, 400, api.CodeUnknownField, false},
		{"a repeated field is refused", "POST", "/v1/echo", adminToken, "", `{"name":"x","name":"y"}`, 400, api.CodeDuplicateField, false},
		{"malformed JSON is refused", "POST", "/v1/echo", adminToken, "", `{"name":`, 400, api.CodeMalformedJSON, false},
		{"a wrong JSON type names the field", "POST", "/v1/echo", adminToken, "", `{"name":5}`, 400, api.CodeInvalidField, false},
		{"trailing data is refused", "POST", "/v1/echo", adminToken, "", `{"name":"x"} {}`, 400, api.CodeMalformedJSON, false},
		{"an empty body is refused", "POST", "/v1/echo", adminToken, "", ``, 400, api.CodeMalformedJSON, false},
		{"a form body is 415", "POST", "/v1/echo", adminToken, "application/x-www-form-urlencoded", `{"name":"x"}`, 415, api.CodeUnsupportedMediaType, false},
		{"a body without Content-Type is 415", "POST", "/v1/echo", adminToken, "-", `{"name":"x"}`, 415, api.CodeUnsupportedMediaType, false},
		{"a body over the limit is 413", "POST", "/v1/echo", adminToken, "", `{"name":"` + strings.Repeat("a", 2000) + `"}`, 413, api.CodeBodyTooLarge, false},
		{"an unknown path is 404", "GET", "/v1/nothing", adminToken, "", ``, 404, api.CodeNotFound, false},
		{"a wrong method is 405", "DELETE", "/v1/echo", adminToken, "", ``, 405, api.CodeMethodNotAllowed, false},
		{"a not-found sentinel is 404", "GET", "/v1/things/missing", adminToken, "", ``, 404, api.CodeNotFound, false},
		{"a panic is a 500 that says nothing of its value", "GET", "/v1/things/panic", adminToken, "", ``, 500, api.CodeInternal, false},
		{"an unavailable backend is 503", "GET", "/v1/things/down", adminToken, "", ``, 503, api.CodeBackendUnavailable, false},
		{"magnum routes answer in magnum's format", "POST", "/v1/certificates", adminToken, "", `{}`, 400, "", true},
		{"unknown magnum paths answer in magnum's format", "GET", "/v1/certificates", adminToken, "", ``, 405, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req := httptest.NewRequest(tt.method, tt.path, body)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			switch {
			case tt.contentType == "" && tt.body != "":
				req.Header.Set("Content-Type", "application/json")
			case tt.contentType != "-":
				req.Header.Set("Content-Type", tt.contentType)
			}
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if rec.Header().Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id header")
			}
			if strings.Contains(rec.Body.String(), "secret-material") {
				t.Errorf("response leaks a panic value: %s", rec.Body)
			}
			if tt.wantStatus < 400 {
				return
			}
			if tt.wantMagnum {
				var m struct{ Errors []api.MagnumError }
				if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || len(m.Errors) != 1 || m.Errors[0].Status != tt.wantStatus {
					t.Fatalf("not a magnum error body: %s", rec.Body)
				}
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var p api.Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatalf("decode problem: %v; body %s", err, rec.Body)
			}
			if p.Code != tt.wantCode || p.Status != tt.wantStatus || p.RequestID == "" || len(p.Errors) == 0 {
				t.Errorf("problem = %+v, want code %s", p, tt.wantCode)
			}
			// Every member DESIGN lists is present, even when empty.
			var members map[string]json.RawMessage
			var items struct {
				Errors []map[string]json.RawMessage `json:"errors"`
			}
			if json.Unmarshal(rec.Body.Bytes(), &members) != nil || json.Unmarshal(rec.Body.Bytes(), &items) != nil {
				t.Fatalf("not a JSON object: %s", rec.Body)
			}
			for _, k := range []string{"type", "status", "code", "title", "detail", "errors", "request_id"} {
				if _, ok := members[k]; !ok {
					t.Errorf("problem has no %q: %s", k, rec.Body)
				}
			}
			for _, fe := range items.Errors {
				for _, k := range []string{"code", "field", "message"} {
					if _, ok := fe[k]; !ok {
						t.Errorf("errors[] item has no %q: %s", k, rec.Body)
					}
				}
			}
		})
	}
}

func TestGatewayChecksTokenHeaders(t *testing.T) {
	g := newTestGateway(t, nil)
	const (
		missing   = "missing credentials"
		notBearer = "must use the Bearer scheme"
		invalid   = "invalid or expired token"
	)
	for _, tt := range []struct {
		name       string
		headers    map[string]string
		wantStatus int
		wantUser   string // on success
		wantDetail string // on 401, a part of the detail
	}{
		{"Bearer is accepted", map[string]string{"Authorization": "Bearer " + memberToken}, 200, "bob", ""},
		{"X-Auth-Token is accepted", map[string]string{"X-Auth-Token": memberToken}, 200, "bob", ""},
		{"Bearer is case-insensitive", map[string]string{"Authorization": "bearer " + memberToken}, 200, "bob", ""},
		{"spaces around a Bearer token are ignored", map[string]string{"Authorization": " Bearer  " + memberToken + " "}, 200, "bob", ""},
		{"Basic alone is refused as not Bearer", map[string]string{"Authorization": "Basic " + memberToken}, 401, "", notBearer},
		{"a scheme alone is refused as not Bearer", map[string]string{"Authorization": "Negotiate"}, 401, "", notBearer},
		{"Basic with X-Auth-Token uses X-Auth-Token", map[string]string{"Authorization": "Basic YWxpY2U6cHc=", "X-Auth-Token": memberToken}, 200, "bob", ""},
		{"Basic with an invalid X-Auth-Token is an invalid token", map[string]string{"Authorization": "Basic YWxpY2U6cHc=", "X-Auth-Token": "wrong-token-0123456789"}, 401, "", invalid},
		{"Bearer wins over X-Auth-Token", map[string]string{"Authorization": "Bearer " + adminToken, "X-Auth-Token": memberToken}, 200, "alice", ""},
		{"an invalid Bearer is not rescued by X-Auth-Token", map[string]string{"Authorization": "Bearer wrong-token-0123456789", "X-Auth-Token": memberToken}, 401, "", invalid},
		{"an empty Bearer is not rescued by X-Auth-Token", map[string]string{"Authorization": "Bearer ", "X-Auth-Token": memberToken}, 401, "", missing},
		{"no credentials at all are missing", map[string]string{}, 401, "", missing},
		{"an empty X-Auth-Token is missing", map[string]string{"X-Auth-Token": ""}, 401, "", missing},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/v1/echo", strings.NewReader(`{"name":"x"}`))
			req.Header.Set("Content-Type", "application/json")
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantStatus == 200 {
				var got map[string]string
				if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got["user"] != tt.wantUser {
					t.Fatalf("user = %q, want %q (%v)", got["user"], tt.wantUser, err)
				}
				return
			}
			if rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			var p api.Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Code != api.CodeUnauthorized || !strings.Contains(p.Detail, tt.wantDetail) {
				t.Fatalf("problem = %+v, want code %s and detail with %q (%v)", p, api.CodeUnauthorized, tt.wantDetail, err)
			}
		})
	}
}

func TestGatewayKeepsAClientRequestID(t *testing.T) {
	g := newTestGateway(t, nil)
	req := httptest.NewRequest("GET", "/healthz", nil)
	req.Header.Set("X-Request-Id", "trace-123")
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, req)
	if got := rec.Header().Get("X-Request-Id"); got != "trace-123" {
		t.Errorf("X-Request-Id = %q", got)
	}
	req.Header.Set("X-Request-Id", "bad id\nwith newline")
	rec = httptest.NewRecorder()
	g.ServeHTTP(rec, req)
	if got := rec.Header().Get("X-Request-Id"); !strings.HasPrefix(got, "req-") {
		t.Errorf("an unsafe request id was echoed: %q", got)
	}
}

func TestGatewayOps(t *testing.T) {
	var down error
	g := newTestGateway(t, func(context.Context) error { return down })
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec
	}
	if rec := get("/readyz"); rec.Code != 200 {
		t.Fatalf("readyz = %d", rec.Code)
	}
	down = errors.New("database file missing")
	if rec := get("/readyz"); rec.Code != 503 {
		t.Fatalf("readyz with a backend down = %d, want 503", rec.Code)
	}
	if rec := get("/healthz"); rec.Code != 200 {
		t.Fatalf("healthz = %d", rec.Code)
	}
	rec := get("/metrics")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `clusterkeys_http_requests_total{code="503",route="readyz"} 1`) {
		t.Fatalf("metrics do not count requests by route and code:\n%s", rec.Body)
	}
	// Two readyz requests so far: the latency histogram saw both.
	if !strings.Contains(rec.Body.String(), `clusterkeys_http_request_duration_seconds_count{route="readyz"} 2`) {
		t.Fatalf("metrics have no latency histogram of readyz with 2 observations:\n%s", rec.Body)
	}
}

func TestNewRefusesAnUnauthenticatedPrivateRoute(t *testing.T) {
	_, err := New(Config{}, api.Route{Pattern: "GET /x", Name: "x", Handler: func(http.ResponseWriter, *http.Request) error { return nil }})
	if err == nil {
		t.Fatal("New accepted a private route without an authenticator")
	}
	_, err = New(Config{}, api.Route{Pattern: "GET /healthz", Name: "dup", Public: true, Handler: func(http.ResponseWriter, *http.Request) error { return nil }})
	if err == nil {
		t.Fatal("New accepted a pattern that conflicts with /healthz")
	}
}

func BenchmarkGatewayAuthenticatedRequest(b *testing.B) {
	t := &testing.T{}
	g := newTestGateway(t, nil)
	body := `{"name":"bench"}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/v1/echo", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+memberToken)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code, rec.Body.String())
		}
	}
}

// A backend that hangs (an HSM that stopped answering) must not hang the
// readiness probe: /readyz answers 503 within ReadyTimeout.
func TestReadyzAnswersWhenABackendHangs(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	g, err := New(Config{
		ReadyTimeout: 50 * time.Millisecond,
		Ready: func(ctx context.Context) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-release:
				return nil
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		done <- rec.Code
	}()
	select {
	case code := <-done:
		if code != http.StatusServiceUnavailable {
			t.Fatalf("readyz with a hung backend = %d, want 503", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("readyz still waiting on a hung backend after 10 s")
	}
}

// TestUnmatchedErrorFormat: a request no route matches (404, 405) answers in
// the error format of the routes nearest its path, as each route declares
// it, whatever its path; where routes of two formats share the nearest
// prefix, problem+json.
func TestUnmatchedErrorFormat(t *testing.T) {
	ok := func(w http.ResponseWriter, r *http.Request) error { return nil }
	g, err := New(Config{},
		api.Route{Pattern: "POST /v2/legacy", Name: "legacy", Format: api.MagnumErrors, Public: true, Handler: ok},
		api.Route{Pattern: "GET /v2/legacy/{id}", Name: "legacy_show", Format: api.MagnumErrors, Public: true, Handler: ok},
		api.Route{Pattern: "GET /v2/shared/{id}", Name: "shared_native", Public: true, Handler: ok},
		api.Route{Pattern: "GET /v2/shared/{id}/legacy", Name: "shared_legacy", Format: api.MagnumErrors, Public: true, Handler: ok},
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, method, path string
		wantStatus         int
		wantMagnum         bool
	}{
		{"another method on a legacy route", "GET", "/v2/legacy", 405, true},
		{"an unknown path under legacy routes", "GET", "/v2/legacy/x/y", 404, true},
		{"an unknown path under no route", "GET", "/v3/nothing", 404, false},
		{"a prefix shared by both formats", "DELETE", "/v2/shared/x", 405, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.wantStatus, rec.Body)
			}
			var m struct{ Errors []api.MagnumError }
			isMagnum := json.Unmarshal(rec.Body.Bytes(), &m) == nil && len(m.Errors) == 1 && m.Errors[0].Status == tt.wantStatus
			isProblem := rec.Header().Get("Content-Type") == "application/problem+json"
			if isMagnum != tt.wantMagnum || isProblem == tt.wantMagnum {
				t.Errorf("body %s (Content-Type %q), want Magnum's format: %v", rec.Body, rec.Header().Get("Content-Type"), tt.wantMagnum)
			}
		})
	}
}

// TestOneDispatch: the mux is asked once per request. A matched route's
// handler writes to the real writer (its headers and a 404 it returns
// itself are its own, with a request id); the mux's own 404 and 405 answer
// in the API's format without the mux's text/plain headers; a redirect the
// mux makes for an unclean path passes through with its Location.
func TestOneDispatch(t *testing.T) {
	g := newTestGateway(t, nil)
	for _, tt := range []struct {
		name, method, path string
		wantStatus         int
		wantType           string
		wantLocation       string
	}{
		{"a route's answer", "GET", "/v1/things/x", 200, "application/json", ""},
		{"a route's own 404", "GET", "/v1/things/missing", 404, "application/problem+json", ""},
		{"the mux's 404", "GET", "/v1/nothing", 404, "application/problem+json", ""},
		{"the mux's 405", "PUT", "/v1/things/x", 405, "application/problem+json", ""},
		{"the mux's redirect of an unclean path", "GET", "/v1/things/../things/x", 307, "", "/v1/things/x"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "http://example.invalid/", nil)
			req.URL.Path = tt.path
			req.Header.Set("Authorization", "Bearer "+adminToken)
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantType != "" && rec.Header().Get("Content-Type") != tt.wantType {
				t.Errorf("Content-Type = %q, want %q", rec.Header().Get("Content-Type"), tt.wantType)
			}
			if tt.wantLocation != "" && rec.Header().Get("Location") != tt.wantLocation {
				t.Errorf("Location = %q, want %q", rec.Header().Get("Location"), tt.wantLocation)
			}
			if tt.wantStatus != 307 && !strings.HasPrefix(rec.Header().Get("X-Request-Id"), "req-") {
				t.Errorf("X-Request-Id = %q", rec.Header().Get("X-Request-Id"))
			}
			if tt.wantStatus == 405 && rec.Header().Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
}

// TestRequestIDs: made ids are "req-" and 24 hex digits, and differ.
func TestRequestIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newRequestID()
		if len(id) != 28 || !strings.HasPrefix(id, "req-") || strings.Trim(id[4:], "0123456789abcdef") != "" {
			t.Fatalf("request id %q", id)
		}
		if seen[id] {
			t.Fatalf("request id %q made twice", id)
		}
		seen[id] = true
	}
}
