package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	legacyrouter "github.com/getkin/kin-openapi/routers/legacy"

	"github.com/clusterkeys/clusterkeys/pkg/api/openapi"
)

// The contract check: every request a test sends to a clusterkeys server
// through client (or clientFrom) and every response it gets are validated
// against the OpenAPI document (pkg/api/openapi/openapi.json), so that the
// document cannot drift from the code.
//
//   - Every response must be documented: its route, its status, its
//     Content-Type, its body. A response of a path or method the document
//     does not have must be the 404 or 405 error saying so.
//   - A request the document refuses must be refused by the server too
//     (status 400 or more): tests send bad input on purpose (unknown fields,
//     no token, wrong Content-Type), and what is checked is that the server
//     and the document agree. A bad request the server accepts is a
//     violation.
//
// Violations are collected per server and fail the test that started it.

// contract is the loaded document and its router, once per test binary.
var contract = sync.OnceValues(func() (*contractDoc, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openapi.Document())
	if err != nil {
		return nil, fmt.Errorf("load the OpenAPI document: %w", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		return nil, fmt.Errorf("the OpenAPI document is version %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is invalid: %w", err)
	}
	// For 3.1 documents openapi3filter validates every value with a JSON
	// Schema 2020-12 validator that it compiles anew on each call (about
	// 10 ms a response, which is more than the limits tests can bear on a
	// small machine); its own validator takes 0.1 ms. The document uses
	// only keywords that validator enforces (type, type arrays with
	// "null", enum, pattern, required, additionalProperties, minimum and
	// maximum, minItems, maxItems, oneOf), so exchanges are validated with
	// it, after the document itself was validated as 3.1 above.
	doc.OpenAPI = "3.0.3"
	router, err := legacyrouter.NewRouter(doc, openapi3.IsOpenAPI31OrLater())
	if err != nil {
		return nil, fmt.Errorf("route the OpenAPI document: %w", err)
	}
	return &contractDoc{doc: doc, router: router}, nil
})

type contractDoc struct {
	doc    *openapi3.T
	router routers.Router
}

// contractLog collects the violations seen on one server.
type contractLog struct {
	mu         sync.Mutex
	violations []string
}

func (l *contractLog) add(v string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.violations = append(l.violations, v)
}

var (
	contractMu   sync.Mutex
	contractLogs = map[string]*contractLog{} // by host:port of a server
)

// checkContract validates the traffic to the server at addr (host:port)
// until t ends, then fails t with every violation seen.
func checkContract(t testing.TB, addr string) {
	t.Helper()
	if _, err := contract(); err != nil {
		t.Fatal(err)
	}
	l := &contractLog{}
	contractMu.Lock()
	contractLogs[addr] = l
	contractMu.Unlock()
	t.Cleanup(func() {
		contractMu.Lock()
		delete(contractLogs, addr)
		contractMu.Unlock()
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, v := range l.violations {
			t.Errorf("OpenAPI contract: %s", v)
		}
	})
}

func contractLogFor(addr string) *contractLog {
	contractMu.Lock()
	defer contractMu.Unlock()
	return contractLogs[addr]
}

// contractTransport validates the exchanges with the servers checkContract
// watches and passes every other request (Barbican, Keystone) through.
type contractTransport struct{ next http.RoundTripper }

func (c contractTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	l := contractLogFor(req.URL.Host)
	if l == nil {
		return c.next.RoundTrip(req)
	}
	var reqBody []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	if v := validateExchange(req, reqBody, resp, respBody); v != "" {
		l.add(v)
	}
	return resp, nil
}

// validateExchange returns what is wrong with one exchange, or "".
func validateExchange(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) string {
	c, err := contract()
	if err != nil {
		return err.Error()
	}
	where := fmt.Sprintf("%s %s → %d", req.Method, req.URL.RequestURI(), resp.StatusCode)
	// The router reads the request; give it a copy with a fresh body.
	r := req.Clone(context.Background())
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		return c.unrouted(where, r, err, resp, respBody)
	}
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
		AuthenticationFunc:    tokenPresent,
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: opts}
	var problems []string
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil && resp.StatusCode < 400 {
		problems = append(problems, fmt.Sprintf("the server accepted a request the document refuses: %v", err))
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: opts}
	out.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		problems = append(problems, fmt.Sprintf("the response is not as documented: %v; body: %s", err, clip(respBody)))
	}
	if len(problems) == 0 {
		return ""
	}
	return where + ": " + strings.Join(problems, "; ")
}

// unrouted checks the answer to a path or method the document does not
// have: the gateway's 404 or 405, in the error format of the path.
func (c *contractDoc) unrouted(where string, r *http.Request, routeErr error, resp *http.Response, body []byte) string {
	want := http.StatusNotFound
	for _, m := range []string{"GET", "PUT", "POST", "PATCH", "DELETE"} {
		other := r.Clone(context.Background())
		other.Method = m
		if _, _, err := c.router.FindRoute(other); err == nil {
			want = http.StatusMethodNotAllowed
		}
	}
	if resp.StatusCode != want {
		return fmt.Sprintf("%s: not in the document (%v), so the answer must be %d", where, routeErr, want)
	}
	schema, ctype := "Problem", "application/problem+json"
	if strings.HasPrefix(r.URL.Path, "/v1/certificates") {
		schema, ctype = "MagnumErrors", "application/json"
	}
	if got := resp.Header.Get("Content-Type"); got != ctype {
		return fmt.Sprintf("%s: Content-Type %q, want %q", where, got, ctype)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Sprintf("%s: body is not JSON: %v", where, err)
	}
	if err := c.doc.ValidateSchemaJSON(c.doc.Components.Schemas[schema].Value, v, openapi3.MultiErrors()); err != nil {
		return fmt.Sprintf("%s: body is not a %s: %v", where, schema, err)
	}
	return ""
}

// tokenPresent stands for the server's authentication: the document's
// security schemes are met when the header they name is there.
func tokenPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	h := in.RequestValidationInput.Request.Header
	switch in.SecurityScheme.Type {
	case "http":
		scheme, token, _ := strings.Cut(h.Get("Authorization"), " ")
		if strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(token) != "" {
			return nil
		}
		return errors.New("no Authorization: Bearer token")
	case "apiKey":
		if h.Get(in.SecurityScheme.Name) != "" {
			return nil
		}
		return fmt.Errorf("no %s header", in.SecurityScheme.Name)
	}
	return fmt.Errorf("unknown security scheme type %q", in.SecurityScheme.Type)
}

func clip(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "…"
	}
	return string(b)
}

// TestOpenAPIDocumentIsServed: GET /openapi.json, without a token, is the
// document this suite validates against.
func TestOpenAPIDocumentIsServed(t *testing.T) {
	s := startServer(t, serverOpts{})
	r := do(t, "GET", s.URL+"/openapi.json", "", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d %s", r.Status, r.Body)
	}
	if !bytes.Equal(r.Body, openapi.Document()) {
		t.Error("GET /openapi.json is not pkg/api/openapi/openapi.json")
	}
}

// TestContractCatchesDrift: the checker refuses responses and accepted
// requests the document does not describe, and lets a server refuse what
// the document refuses.
func TestContractCatchesDrift(t *testing.T) {
	problem := func(status int, code string) string {
		return fmt.Sprintf(`{"type":"about:blank","status":%d,"code":%q,"title":"t","detail":"d","errors":[{"code":%q,"field":"","message":"d"}],"request_id":"req-1"}`, status, code, code)
	}
	ca := `{"cluster":"c1","generation":1,"certificate":"-","trust_bundle":"-","key_algorithm":"ecdsa-p256","not_before":"2026-01-01T00:00:00Z","not_after":"2036-01-01T00:00:00Z","fingerprint_sha256":"` + strings.Repeat("ab", 32) + `"}`
	tests := []struct {
		name               string
		method, path, body string
		token              bool
		status             int
		ctype, respBody    string
		wantViolation      string
	}{
		{name: "a documented exchange", method: "GET", path: "/v1/clusters/c1/ca", token: true,
			status: 200, ctype: "application/json", respBody: ca},
		{name: "an undocumented response field", method: "GET", path: "/v1/clusters/c1/ca", token: true,
			status: 200, ctype: "application/json", respBody: strings.Replace(ca, `{`, `{"secret":"x",`, 1), wantViolation: "not as documented"},
		{name: "an undocumented status", method: "GET", path: "/v1/clusters/c1/ca", token: true,
			status: 418, ctype: "application/problem+json", respBody: problem(418, "not_found"), wantViolation: "not as documented"},
		{name: "an unknown problem code", method: "GET", path: "/v1/clusters/c1/ca", token: true,
			status: 404, ctype: "application/problem+json", respBody: problem(404, "no_such_code"), wantViolation: "not as documented"},
		{name: "an unknown request field the server accepts", method: "PUT", path: "/v1/clusters/c1/ca", body: `{"colour":"red"}`, token: true,
			status: 201, ctype: "application/json", respBody: ca, wantViolation: "accepted a request the document refuses"},
		{name: "an unknown request field the server refuses", method: "PUT", path: "/v1/clusters/c1/ca", body: `{"colour":"red"}`, token: true,
			status: 400, ctype: "application/problem+json", respBody: problem(400, "unknown_field")},
		{name: "no token, refused", method: "GET", path: "/v1/clusters/c1/ca",
			status: 401, ctype: "application/problem+json", respBody: problem(401, "unauthorized")},
		{name: "no token, accepted", method: "GET", path: "/v1/clusters/c1/ca",
			status: 200, ctype: "application/json", respBody: ca, wantViolation: "accepted a request the document refuses"},
		{name: "an undocumented route that answers", method: "GET", path: "/v1/secrets", token: true,
			status: 200, ctype: "application/json", respBody: `{}`, wantViolation: "must be 404"},
		{name: "an undocumented route, 404", method: "GET", path: "/v1/secrets", token: true,
			status: 404, ctype: "application/problem+json", respBody: problem(404, "not_found")},
		{name: "an undocumented method, 405", method: "DELETE", path: "/v1/clusters/c1/ca", token: true,
			status: 405, ctype: "application/problem+json", respBody: problem(405, "method_not_allowed")},
		{name: "a Magnum error body on a native route", method: "GET", path: "/v1/clusters/c1/ca", token: true,
			status: 404, ctype: "application/json", respBody: `{"errors":[]}`, wantViolation: "not as documented"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, "http://127.0.0.1:1"+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if tt.token {
				req.Header.Set("Authorization", "Bearer x")
			}
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{"Content-Type": {tt.ctype}, "X-Request-Id": {"req-1"}}}
			got := validateExchange(req, []byte(tt.body), resp, []byte(tt.respBody))
			switch {
			case tt.wantViolation == "" && got != "":
				t.Errorf("violation %q, want none", got)
			case tt.wantViolation != "" && !strings.Contains(got, tt.wantViolation):
				t.Errorf("violation %q, want one saying %q", got, tt.wantViolation)
			}
		})
	}
}
