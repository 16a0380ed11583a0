package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWriteError(t *testing.T) {
	tests := []struct {
		name       string
		format     ErrorFormat
		requestID  string
		err        error
		wantStatus int
		wantType   string
		wantBody   string
	}{
		{
			"a field error names its field", ProblemJSON, "req-1",
			Invalid(CodeUnknownField, "nam", `unknown field "nam"`),
			400, "application/problem+json",
			`{"type":"about:blank","status":400,"code":"unknown_field","title":"Bad Request","detail":"unknown field \"nam\"","errors":[{"code":"unknown_field","field":"nam","message":"unknown field \"nam\""}],"request_id":"req-1"}`,
		},
		{
			"an error about no field still carries field", ProblemJSON, "req-2",
			New(http.StatusBadRequest, CodeMalformedJSON, "truncated JSON"),
			400, "application/problem+json",
			`{"type":"about:blank","status":400,"code":"malformed_json","title":"Bad Request","detail":"truncated JSON","errors":[{"code":"malformed_json","field":"","message":"truncated JSON"}],"request_id":"req-2"}`,
		},
		{
			"an empty detail is still present", ProblemJSON, "req-3",
			New(http.StatusConflict, CodeConflict, ""),
			409, "application/problem+json",
			`{"type":"about:blank","status":409,"code":"conflict","title":"Conflict","detail":"","errors":[{"code":"conflict","field":"","message":""}],"request_id":"req-3"}`,
		},
		{
			"a field error without a field name carries an empty one", ProblemJSON, "req-4",
			&Error{Status: http.StatusBadRequest, Code: CodeInvalidCSR, Detail: "bad", Fields: []FieldError{{Code: CodeInvalidCSR, Message: "not PEM"}}},
			400, "application/problem+json",
			`{"type":"about:blank","status":400,"code":"invalid_csr","title":"Bad Request","detail":"bad","errors":[{"code":"invalid_csr","field":"","message":"not PEM"}],"request_id":"req-4"}`,
		},
		{
			"a sentinel maps to its status and hides its cause", ProblemJSON, "req-5",
			fmt.Errorf("open secret.db: %w", ErrNotFound),
			404, "application/problem+json",
			`{"type":"about:blank","status":404,"code":"not_found","title":"Not Found","detail":"not found","errors":[{"code":"not_found","field":"","message":"not found"}],"request_id":"req-5"}`,
		},
		{
			"any other error is a 500 that says nothing", ProblemJSON, "req-6",
			errors.New("password=hunter2"),
			500, "application/problem+json",
			`{"type":"about:blank","status":500,"code":"internal_error","title":"Internal Server Error","detail":"internal error","errors":[{"code":"internal_error","field":"","message":"internal error"}],"request_id":"req-6"}`,
		},
		{
			"magnum's format is unchanged", MagnumErrors, "req-7",
			Invalid(CodeInvalidCSR, "csr", "not a CSR"),
			400, "application/json",
			`{"errors":[{"request_id":"req-7","code":"client","status":400,"title":"invalid_csr: not a CSR","detail":"invalid_csr: not a CSR","links":[]}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			e := WriteError(rec, tt.format, tt.requestID, tt.err)
			if rec.Code != tt.wantStatus || e.Status != tt.wantStatus {
				t.Errorf("status = %d (returned %d), want %d", rec.Code, e.Status, tt.wantStatus)
			}
			if ct := rec.Header().Get("Content-Type"); ct != tt.wantType {
				t.Errorf("Content-Type = %q, want %q", ct, tt.wantType)
			}
			if got := rec.Body.String(); got != tt.wantBody+"\n" {
				t.Errorf("body:\n got %s want %s", got, tt.wantBody)
			}
		})
	}
}

func TestWriteErrorRetryAfter(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, ProblemJSON, "r", fmt.Errorf("dial: %w", ErrUnavailable))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "5" {
		t.Fatalf("status %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
}
