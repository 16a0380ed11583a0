package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
)

// HandlerFunc serves one operation. It writes a success response itself and
// returns nil, or writes nothing and returns an error that the gateway turns
// into the route's error format.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// ErrorFormat is how a route reports errors.
type ErrorFormat int

const (
	// ProblemJSON is RFC 9457 application/problem+json (the native API).
	ProblemJSON ErrorFormat = iota
	// MagnumErrors is OpenStack Magnum's {"errors":[…]} body.
	MagnumErrors
)

// Route is one operation a function publishes to the gateway.
type Route struct {
	// Pattern is a net/http ServeMux pattern with a method,
	// e.g. "PUT /v1/clusters/{cluster}/ca".
	Pattern string
	// Name labels metrics and logs, e.g. "ca_create".
	Name string
	// Handler serves the operation.
	Handler HandlerFunc
	// Public routes need no credentials (health, metrics).
	Public bool
	// MaxBody is the largest request body accepted, in bytes;
	// 0 means DefaultMaxBody.
	MaxBody int64
	// Format selects the error body format.
	Format ErrorFormat
}

// DefaultMaxBody is the body limit of a route that sets none: 64 KiB is
// several times the largest CSR or CA request a client sends.
const DefaultMaxBody = 64 << 10

// WriteJSON writes v as a JSON response with the given status: compact
// (no indentation to build and send), ending in a newline, with its
// Content-Length. A value that cannot be encoded writes nothing and returns
// the error, so the gateway can still answer 500.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	buf := responseBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledResponse {
			buf.Reset()
			responseBuffers.Put(buf)
		}
	}()
	// json.Encoder writes what json.Marshal returns (HTML escaped too),
	// then a newline, into the pooled buffer: no copy of the body is
	// allocated per response.
	if err := json.NewEncoder(buf).Encode(v); err != nil {
		return fmt.Errorf("encode JSON response: %w", err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// responseBuffers are WriteJSON's buffers; one that grew past
// maxPooledResponse (a large listing) is left to the collector.
var responseBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledResponse = 64 << 10
