package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
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
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode JSON response: %w", err)
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, err = w.Write(b)
	return err
}
