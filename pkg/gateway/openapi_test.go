package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api/openapi"
	"github.com/clusterkeys/clusterkeys/pkg/functions"
)

// TestOpenAPIDocumentsEveryRoute fails when a route is served and not in
// the OpenAPI document, or documented and not served: the operational
// routes plus every function's routes in pkg/functions, as localrun serve
// composes them.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	g, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	routes := g.opsRoutes()
	for _, f := range functions.All {
		routes = append(routes, f.Routes(&functions.Deps{})...)
	}
	var served []string
	for _, rt := range routes {
		served = append(served, rt.Pattern)
	}

	var d struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapi.Document(), &d); err != nil {
		t.Fatal(err)
	}
	var documented []string
	for p, item := range d.Paths {
		for m := range item {
			if m == "parameters" || m == "summary" || m == "description" || m == "servers" {
				continue
			}
			documented = append(documented, strings.ToUpper(m)+" "+p)
		}
	}
	for _, s := range served {
		if !slices.Contains(documented, s) {
			t.Errorf("route %q is served but not in pkg/api/openapi/openapi.json", s)
		}
	}
	for _, s := range documented {
		if !slices.Contains(served, s) {
			t.Errorf("operation %q is in pkg/api/openapi/openapi.json but no route serves it", s)
		}
	}
}

func TestOpenAPIIsServedWithoutCredentials(t *testing.T) {
	g, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d %s", rec.Code, rec.Body)
	}
	if got := rec.Body.String(); got != string(openapi.Document()) {
		t.Errorf("GET /openapi.json did not return the document")
	}
}
