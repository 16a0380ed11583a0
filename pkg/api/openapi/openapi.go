// Package openapi holds the OpenAPI 3.1 document of the clusterkeys HTTP
// API and the route that serves it at GET /openapi.json.
//
// The document, openapi.json beside this file, describes every route the
// gateway serves (native, Magnum-compatible and operational), every request
// body and query parameter, and every error body with its stable codes. It
// is kept true by tests: the gateway's tests compare its paths and methods
// with the routes the functions publish and its code enums with the Code
// constants, and the end-to-end suite (test/e2e) validates every request it
// sends and every response it gets against it.
package openapi

import (
	"bytes"
	_ "embed"
	"net/http"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

//go:embed openapi.json
var document []byte

// Path is where the gateway serves the document.
const Path = "/openapi.json"

// Document returns a copy of the OpenAPI 3.1 document, as JSON.
func Document() []byte { return bytes.Clone(document) }

// Route returns GET /openapi.json, public like /healthz: the document
// holds no secret and clients fetch it before they have a token.
func Route() api.Route {
	return api.Route{Pattern: http.MethodGet + " " + Path, Name: "openapi", Public: true, Handler: serve}
}

func serve(w http.ResponseWriter, _ *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(document)
	return err
}
