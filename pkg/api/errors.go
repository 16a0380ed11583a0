// Package api holds what every clusterkeys function shares on the wire: the
// error type that carries an HTTP status and a stable code, the route type a
// function publishes, and strict JSON decoding.
//
// # Errors
//
// A handler returns an error; the gateway turns it into an RFC 9457
// application/problem+json body in one place. An *Error carries its status and
// stable snake_case code. Any other error becomes 500 internal_error and its
// text is logged, never sent. Domain packages either return *Error values
// (via New and Invalid) or wrap sentinel errors that the gateway maps.
package api

import (
	"errors"
	"fmt"
	"net/http"
)

// Stable error codes. Clients match on these strings; never change one.
const (
	CodeMalformedJSON        = "malformed_json"
	CodeUnknownField         = "unknown_field"
	CodeDuplicateField       = "duplicate_field"
	CodeInvalidField         = "invalid_field"
	CodeBodyTooLarge         = "body_too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeNotFound             = "not_found"
	CodeUnauthorized         = "unauthorized"
	CodeForbidden            = "forbidden"
	CodeConflict             = "conflict"
	CodeGenerationMismatch   = "generation_mismatch"
	CodeBackendUnavailable   = "backend_unavailable"
	CodeBackendError         = "backend_error"
	CodeInternal             = "internal_error"
	// CodeProjectRequired: the caller has no project and is not an admin,
	// so it owns nothing and may create nothing.
	CodeProjectRequired = "project_required"
	// CodeOverloaded: the instance is at its in-flight limit (503, with
	// Retry-After).
	CodeOverloaded = "overloaded"
	// CodeRateLimited: too many failed authentications from one client
	// address (429, with Retry-After).
	CodeRateLimited = "rate_limited"

	// Certificate authority and signing.
	CodeInvalidCSR     = "invalid_csr"
	CodeCSRSignature   = "csr_signature_invalid"
	CodeWeakKey        = "weak_key"
	CodeUnsupportedKey = "unsupported_key"
	CodeCARequested    = "ca_not_allowed"
	CodeSystemMasters  = "system_masters_requires_admin"
	// CodeSubjectNotAllowed: a CSR subject the caller may not obtain (a
	// name Kubernetes treats as powerful, another user's name, control
	// characters, a wildcard under a public suffix).
	CodeSubjectNotAllowed = "subject_not_allowed"
	CodeMissingSAN        = "missing_san"
	CodeValidityTooLong   = "validity_exceeds_ca"
	CodeInvalidProfile    = "invalid_profile"
	CodeCAExists          = "ca_exists"
	CodeCANotFound        = "ca_not_found"
	CodeInvalidAlgorithm  = "invalid_key_algorithm"
	// CodeUserRevoked: the caller's user was revoked on the cluster; its
	// signs are refused until an admin lifts the revocation.
	CodeUserRevoked = "user_revoked"
)

// FieldError is one reason a request was refused, tied to the field
// concerned. Field is "" when the reason concerns no one field; it is sent
// all the same.
type FieldError struct {
	Code    string `json:"code"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is an error with an HTTP status and a stable code. Detail is safe to
// show to the client: it never contains secret material.
type Error struct {
	Status int
	Code   string
	Detail string
	Fields []FieldError
	// Err is the underlying cause, logged but never sent to the client.
	Err error
	// RetryAfter, when positive, is sent as a Retry-After header (seconds).
	RetryAfter int
}

// Error returns the detail and, if any, the cause.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Detail, e.Err)
	}
	return e.Code + ": " + e.Detail
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// New returns an *Error with the given status, code and client-safe detail.
func New(status int, code, detail string) *Error {
	return &Error{Status: status, Code: code, Detail: detail}
}

// Invalid returns a 400 *Error about one field.
func Invalid(code, field, message string) *Error {
	return &Error{
		Status: http.StatusBadRequest,
		Code:   code,
		Detail: message,
		Fields: []FieldError{{Code: code, Field: field, Message: message}},
	}
}

// Wrap returns a copy of e whose cause is err.
func (e *Error) Wrap(err error) *Error {
	c := *e
	c.Err = err
	return &c
}

// Sentinel errors that lower layers (stores, key custody, authentication)
// wrap; the gateway maps each to a status and code.
var (
	// ErrNotFound: the named object does not exist (404 not_found).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the object exists with other parameters (409 conflict).
	ErrConflict = errors.New("conflict")
	// ErrGenerationMismatch: a compare-and-swap lost (409 generation_mismatch).
	ErrGenerationMismatch = errors.New("generation mismatch")
	// ErrUnavailable: a backend (HSM, Barbican, database) cannot be reached
	// now; retrying later may work (503 backend_unavailable).
	ErrUnavailable = errors.New("backend unavailable")
	// ErrBackend: a backend refused the operation (502 backend_error).
	ErrBackend = errors.New("backend error")
	// ErrUnauthenticated: no valid credentials (401 unauthorized).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: valid credentials, not allowed (403 forbidden).
	ErrForbidden = errors.New("forbidden")
	// ErrUserRevoked: the requester of a certificate was revoked on the
	// cluster, so the store refused to record it (403 user_revoked).
	ErrUserRevoked = errors.New("user revoked")
)

// ErrorFor returns the *Error the client sees for err: err itself if it is
// (or wraps) an *Error, the mapping of a sentinel, or 500 internal_error.
func ErrorFor(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Detail: "not found", Err: err}
	case errors.Is(err, ErrGenerationMismatch):
		return &Error{Status: http.StatusConflict, Code: CodeGenerationMismatch, Detail: "the expected generation is stale", Err: err}
	case errors.Is(err, ErrConflict):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Detail: "conflicts with the current state", Err: err}
	case errors.Is(err, ErrUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeBackendUnavailable, Detail: "a backend is unavailable; retry later", Err: err, RetryAfter: 5}
	case errors.Is(err, ErrBackend):
		return &Error{Status: http.StatusBadGateway, Code: CodeBackendError, Detail: "a backend refused the operation", Err: err}
	case errors.Is(err, ErrUnauthenticated):
		return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Detail: "missing or invalid credentials", Err: err}
	case errors.Is(err, ErrUserRevoked):
		return &Error{Status: http.StatusForbidden, Code: CodeUserRevoked, Detail: "the user was revoked on this cluster; an admin may lift it", Err: err}
	case errors.Is(err, ErrForbidden):
		return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Detail: "not allowed", Err: err}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Detail: "internal error", Err: err}
}
