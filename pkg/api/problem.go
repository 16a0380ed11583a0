package api

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Problem is the RFC 9457 body of every native API error. Detail and
// Errors are always present (Detail may be empty, Errors has at least one
// entry), as is each entry's field, so that clients may index them.
type Problem struct {
	Type      string       `json:"type"`
	Status    int          `json:"status"`
	Code      string       `json:"code"`
	Title     string       `json:"title"`
	Detail    string       `json:"detail"`
	Errors    []FieldError `json:"errors"`
	RequestID string       `json:"request_id,omitempty"`
}

// MagnumError is one entry of Magnum's {"errors":[…]} body, as produced by
// magnum.api.middleware.parsable_error and read by python-magnumclient.
type MagnumError struct {
	RequestID string `json:"request_id"`
	Code      string `json:"code"`
	Status    int    `json:"status"`
	Title     string `json:"title"`
	Detail    string `json:"detail"`
	Links     []any  `json:"links"`
}

// WriteError writes err in the given format and returns the *Error written.
func WriteError(w http.ResponseWriter, format ErrorFormat, requestID string, err error) *Error {
	e := ErrorFor(err)
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	var body any
	switch format {
	case MagnumErrors:
		h.Set("Content-Type", "application/json")
		kind := "client"
		if e.Status >= 500 {
			kind = "server"
		}
		detail := e.Detail
		if detail == "" {
			detail = http.StatusText(e.Status)
		}
		body = map[string]any{"errors": []MagnumError{{
			RequestID: requestID, Code: kind, Status: e.Status,
			// python-magnumclient shows only the title, so, as Magnum's
			// parsable_error does, the title carries the reason.
			Title: e.Code + ": " + detail, Detail: e.Code + ": " + detail, Links: []any{},
		}}}
	default:
		h.Set("Content-Type", "application/problem+json")
		fields := e.Fields
		if len(fields) == 0 {
			fields = []FieldError{{Code: e.Code, Message: e.Detail}}
		}
		body = Problem{
			Type: "about:blank", Status: e.Status, Code: e.Code,
			Title: http.StatusText(e.Status), Detail: e.Detail,
			Errors: fields, RequestID: requestID,
		}
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(body)
	return e
}
