package api

import (
	"errors"
	"net/http"
	"testing"
)

type sample struct {
	Name  string   `json:"name"`
	Count int      `json:"count"`
	Tags  []string `json:"tags"`
}

func TestDecodeJSONBytes(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantCode  string
		wantField string
	}{
		{"a valid object decodes", `{"name":"a","count":2}`, "", ""},
		{"an unknown field names the field", `{"nam":"a"}`, CodeUnknownField, "nam"},
		{"a wrong type names the field", `{"count":"2"}`, CodeInvalidField, "count"},
		{"truncated JSON is malformed", `{"name":"a"`, CodeMalformedJSON, ""},
		{"a syntax error is malformed", `{name:1}`, CodeMalformedJSON, ""},
		{"two objects are refused", `{}{}`, CodeMalformedJSON, ""},
		{"an array is not an object", `[]`, CodeInvalidField, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v sample
			err := DecodeJSONBytes([]byte(tt.body), &v)
			if tt.wantCode == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.wantCode || e.Status != http.StatusBadRequest {
				t.Fatalf("err = %v, want code %s", err, tt.wantCode)
			}
			if tt.wantField != "" && (len(e.Fields) != 1 || e.Fields[0].Field != tt.wantField) {
				t.Fatalf("fields = %+v, want %s", e.Fields, tt.wantField)
			}
		})
	}
}

func FuzzDecodeJSONBytes(f *testing.F) {
	for _, s := range []string{`{"name":"a","count":2,"tags":["x"]}`, `{"x":1}`, `{`, `[]`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var v sample
		err := DecodeJSONBytes(b, &v)
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest {
			t.Fatalf("decode error is not a 400 *Error: %v", err)
		}
	})
}
