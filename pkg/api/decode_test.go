package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

type sample struct {
	Name  string   `json:"name"`
	Count int      `json:"count"`
	Tags  []string `json:"tags"`
}

type inner struct {
	ID string `json:"id"`
	N  int    `json:"n,omitempty"`
}

type embedded struct {
	Extra string `json:"extra"`
}

// nested has every shape the strict check walks into or leaves alone.
type nested struct {
	embedded
	Inner   inner            `json:"inner"`
	Ptr     *inner           `json:"ptr"`
	List    []inner          `json:"list"`
	PtrList []*inner         `json:"ptr_list"`
	Grid    [][]inner        `json:"grid"`
	Array   [2]inner         `json:"array"`
	Map     map[string]inner `json:"map"`
	Raw     json.RawMessage  `json:"raw"`
	Any     any              `json:"any"`
	When    time.Time        `json:"when"`
	Skip    string           `json:"-"`
	NoTag   string
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
		{"an empty body is truncated", ``, CodeMalformedJSON, ""},
		{"null decodes as nothing", `null`, "", ""},
		{"an escaped key is its unescaped name", `{"na\u006de":"a"}`, "", ""},
		{"a capitalised key is unknown", `{"Name":"a"}`, CodeUnknownField, "Name"},
		{"an upper-case key is unknown", `{"COUNT":1}`, CodeUnknownField, "COUNT"},
		{"a key folding to a field by Unicode is unknown", `{"tag\u017f":["x"]}`, CodeUnknownField, "tag\u017f"},
		{"a case variant after the field is unknown", `{"name":"a","NAME":"b"}`, CodeUnknownField, "NAME"},
		{"a repeated key is refused", `{"name":"a","name":"b"}`, CodeDuplicateField, "name"},
		{"a repeated key spelt with an escape is refused", `{"name":"a","na\u006de":"b"}`, CodeDuplicateField, "name"},
		{"a repeated unknown key is unknown", `{"x":1,"x":2}`, CodeUnknownField, "x"},
		{"the first refusal is reported", `{"name":"a","x":1,"name":"b"}`, CodeUnknownField, "x"},
		{"an unknown field wins over a wrong type", `{"count":"2","x":1}`, CodeUnknownField, "x"},
		{"a syntax error wins over an unknown field", `{"x":1,"name":}`, CodeMalformedJSON, ""},
		{"truncation wins over a repeated key", `{"name":"a","name":"b"`, CodeMalformedJSON, ""},
		{"trailing data after a repeated key is a repeated key", `{"name":"a","name":"b"} {}`, CodeDuplicateField, "name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v sample
			checkDecode(t, DecodeJSONBytes([]byte(tt.body), &v), tt.wantCode, tt.wantField)
		})
	}
}

func TestDecodeJSONBytesNested(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantCode  string
		wantField string
	}{
		{"every shape decodes", `{"extra":"e","inner":{"id":"a","n":1},"ptr":{"id":"b"},"list":[{"id":"c"}],
			"ptr_list":[null,{"id":"d"}],"grid":[[{"id":"e"}],[]],"array":[{"id":"f"},{"id":"g"}],
			"map":{"K":{"id":"h"}},"raw":{"A":1,"A":2,"a":3},"any":{"B":[1,{"b":2,"b":3}]},
			"when":"2024-01-02T03:04:05Z","NoTag":"n"}`, "", ""},
		{"a nested struct's key is case-sensitive", `{"inner":{"ID":"a"}}`, CodeUnknownField, "inner.ID"},
		{"a pointed-to struct's key is case-sensitive", `{"ptr":{"Id":"a"}}`, CodeUnknownField, "ptr.Id"},
		{"a slice element's key is case-sensitive", `{"list":[{"id":"a"},{"id":"b","iD":"c"}]}`, CodeUnknownField, "list.iD"},
		{"a slice of pointers is checked", `{"ptr_list":[null,{"x":1}]}`, CodeUnknownField, "ptr_list.x"},
		{"an array element is checked", `{"array":[{"id":"a"},{"Id":"b"}]}`, CodeUnknownField, "array.Id"},
		{"a slice of slices is checked", `{"grid":[[],[{"id":"a","id":"b"}]]}`, CodeDuplicateField, "grid.id"},
		{"a repeated key in a nested struct is refused", `{"inner":{"id":"a","id":"b"}}`, CodeDuplicateField, "inner.id"},
		{"a repeated nested struct is refused", `{"inner":{},"inner":{}}`, CodeDuplicateField, "inner"},
		{"an embedded struct's field is promoted", `{"extra":"e"}`, "", ""},
		{"an embedded struct's field is case-sensitive", `{"Extra":"e"}`, CodeUnknownField, "Extra"},
		{"an untagged embedded struct is no field", `{"embedded":{"extra":"e"}}`, CodeUnknownField, "embedded"},
		{"a field tagged - is unknown", `{"Skip":"s"}`, CodeUnknownField, "Skip"},
		{"an untagged field has its Go name", `{"notag":"n"}`, CodeUnknownField, "notag"},
		{"map keys are free", `{"map":{"ID":{"id":"a"},"id":{"id":"b"}}}`, "", ""},
		{"raw JSON is free", `{"raw":{"X":1,"X":2}}`, "", ""},
		{"raw JSON takes a number no float64 holds", `{"raw":1e400}`, "", ""},
		{"interfaces are free", `{"any":{"X":1,"X":2}}`, "", ""},
		{"a scalar for a struct is a type error", `{"inner":"a"}`, CodeInvalidField, "inner"},
		{"an object for a slice is a type error", `{"list":{"id":"a","ID":"b"}}`, CodeInvalidField, "list"},
		{"an array for a struct is a type error", `{"inner":[{"x":1}]}`, CodeInvalidField, "inner"},
		{"a wrong type deep down names its path", `{"list":[{"id":1}]}`, CodeInvalidField, "list.id"},
		{"a syntax error deep down wins", `{"inner":{"X":1},"list":[{"id":"a",}]}`, CodeMalformedJSON, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v nested
			checkDecode(t, DecodeJSONBytes([]byte(tt.body), &v), tt.wantCode, tt.wantField)
		})
	}
}

func checkDecode(t *testing.T, err error, wantCode, wantField string) {
	t.Helper()
	if wantCode == "" {
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != wantCode || e.Status != http.StatusBadRequest {
		t.Fatalf("err = %v, want code %s", err, wantCode)
	}
	if wantField != "" && (len(e.Fields) != 1 || e.Fields[0].Field != wantField || e.Fields[0].Code != wantCode) {
		t.Fatalf("fields = %+v, want %s", e.Fields, wantField)
	}
}

type (
	conflictA struct{ X, Y, Z string }
	conflictB struct{ X, Y string }
	tagged    struct {
		Y string `json:"Y"`
	}
	deeper  struct{ conflictA }
	Pointed struct {
		ID string `json:"id"`
	}
	ptrEmbedded  struct{ *Pointed }
	unexportedNS struct {
		int
		hidden string
		Shown  string `json:"shown,omitempty"`
	}
	twice  struct{ conflictA }
	twice2 struct{ conflictA }
)

// TestStrictFieldNames checks the names the strict check accepts against
// encoding/json's own rules for embedded and tagged fields.
func TestStrictFieldNames(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want []string
	}{
		{"same depth conflicts drop out", struct {
			conflictA
			conflictB
		}{}, []string{"Z"}},
		{"a shallower field hides a deeper one", struct {
			deeper
			conflictB
		}{}, []string{"X", "Y", "Z"}},
		{"a tagged field wins at equal depth", struct {
			conflictB
			tagged
		}{}, []string{"X", "Y"}},
		{"the same struct embedded twice at one depth drops out", struct {
			twice
			twice2
		}{}, nil},
		{"an embedded pointer is followed", ptrEmbedded{}, []string{"id"}},
		{"unexported fields are skipped", unexportedNS{int: 1, hidden: "h"}, []string{"shown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ := reflect.TypeOf(tt.v)
			got := slices.Sorted(maps.Keys(strictFieldsOf(typ).byName))
			if !slices.Equal(got, tt.want) {
				t.Fatalf("names = %q, want %q", got, tt.want)
			}
			// encoding/json agrees: it accepts exactly these names.
			for _, n := range []string{"X", "Y", "Z", "A", "id", "n", "shown", "hidden", "int", "inner"} {
				p := reflect.New(typ).Interface()
				dec := json.NewDecoder(strings.NewReader(`{"` + n + `":null}`))
				dec.DisallowUnknownFields()
				if ok := dec.Decode(p) == nil; ok != slices.Contains(tt.want, n) {
					t.Errorf("encoding/json accepts %q: %v", n, ok)
				}
			}
		})
	}
}

func FuzzDecodeJSONBytes(f *testing.F) {
	for _, s := range []string{
		`{"name":"a","count":2,"tags":["x"]}`, `{"x":1}`, `{`, `[]`, `null`,
		`{"Name":"a"}`, `{"name":"a","name":"b"}`, `{"na\u006de":"a"}`, `{"tag\u017f":[]}`,
		`{"inner":{"id":"a","ID":"b"},"list":[{"id":"c"},{"n":1,"n":2}]}`,
		`{"ptr_list":[null,{"id":"d"}],"grid":[[{"id":"e"}]],"array":[{},{}]}`,
		`{"map":{"K":{"id":"h"}},"raw":{"A":1,"A":2},"any":[{"b":1,"b":2}],"when":"2024-01-02T03:04:05Z"}`,
		`{"extra":"e","NoTag":"n","raw":1e400}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range []any{new(sample), new(nested)} {
			err := DecodeJSONBytes(b, v)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Status != http.StatusBadRequest {
					t.Fatalf("decode error is not a 400 *Error: %v", err)
				}
				switch e.Code {
				case CodeMalformedJSON, CodeInvalidField, CodeUnknownField, CodeDuplicateField:
				default:
					t.Fatalf("unexpected code %s", e.Code)
				}
				continue
			}
			// Whatever is accepted decodes the same with encoding/json,
			// and its top-level keys are exact field names.
			want := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			if err := json.Unmarshal(b, want); err != nil {
				t.Fatalf("accepted, but encoding/json refuses it: %v", err)
			}
			if !reflect.DeepEqual(v, want) {
				t.Fatalf("decoded %+v, encoding/json %+v", v, want)
			}
			var keys map[string]json.RawMessage
			if json.Unmarshal(b, &keys) == nil {
				names := strictFieldsOf(reflect.TypeOf(v).Elem()).byName
				for k := range keys {
					if _, ok := names[k]; !ok {
						t.Fatalf("accepted key %q that is no field's exact name", k)
					}
				}
			}
		}
	})
}

// BenchmarkDecodeJSONBytes compares strict decoding (the exact-name and
// duplicate walk, then encoding/json) with the same before its fast path
// (decodeReference) and with encoding/json alone with
// DisallowUnknownFields, on a sign request, in the same run.
func BenchmarkDecodeJSONBytes(b *testing.B) {
	type signRequest struct {
		CSR           string `json:"csr"`
		Profile       string `json:"profile"`
		ValidityHours int    `json:"validity_hours"`
	}
	body := []byte(`{"csr":"-----BEGIN CERTIFICATE REQUEST-----\n` + strings.Repeat("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", 10) +
		`\n-----END CERTIFICATE REQUEST-----\n","profile":"client","validity_hours":24}`)
	b.Run("strict", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v signRequest
			if err := DecodeJSONBytes(body, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("before-fast-path", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v signRequest
			if err := decodeReference(body, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v signRequest
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestDecodeJSONContentType(t *testing.T) {
	tests := []struct {
		name        string
		contentType string // "-" sends none
		body        string
		allowEmpty  bool
		wantStatus  int
	}{
		{"application/json is decoded", "application/json", `{"name":"x"}`, false, 0},
		{"application/json with a charset is decoded", "application/json; charset=utf-8", `{"name":"x"}`, false, 0},
		{"a +json type is decoded", "application/merge-patch+json", `{"name":"x"}`, false, 0},
		{"a body without Content-Type is 415", "-", `{"name":"x"}`, false, http.StatusUnsupportedMediaType},
		{"a body with an empty Content-Type is 415", "", `{"name":"x"}`, false, http.StatusUnsupportedMediaType},
		{"a form body is 415", "application/x-www-form-urlencoded", `{"name":"x"}`, false, http.StatusUnsupportedMediaType},
		{"text/plain is 415", "text/plain", `{"name":"x"}`, false, http.StatusUnsupportedMediaType},
		{"no body and no Content-Type is fine where a body is optional", "-", ``, true, 0},
		{"no body with octet-stream is fine where a body is optional (magnumclient's PATCH)", "application/octet-stream", ``, true, 0},
		{"no body where one is required is malformed, not 415", "-", ``, false, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", "/v1/x", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.contentType != "-" {
				req.Header["Content-Type"] = []string{tt.contentType}
			}
			var v sample
			err = DecodeJSON(req, &v, tt.allowEmpty)
			status := 0
			if err != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("DecodeJSON = %v, not an *Error", err)
				}
				status = e.Status
				if status == http.StatusUnsupportedMediaType && e.Code != CodeUnsupportedMediaType {
					t.Errorf("code %s, want %s", e.Code, CodeUnsupportedMediaType)
				}
			}
			if status != tt.wantStatus {
				t.Fatalf("DecodeJSON = %v (status %d), want status %d", err, status, tt.wantStatus)
			}
			if status == 0 && tt.body != "" && v.Name != "x" {
				t.Fatalf("decoded %+v", v)
			}
		})
	}
}

// TestDecodeJSONReadsTheWholeBody checks that the Content-Length a request
// announces only sizes the buffer: the body is read whole when it says
// less or more than it holds, the gateway's limit still answers 413, and a
// body of unknown length is read too.
func TestDecodeJSONReadsTheWholeBody(t *testing.T) {
	const body = `{"name":"x","tags":["a","b"]}`
	tests := []struct {
		name          string
		contentLength int64
		limit         int64 // http.MaxBytesReader's, 0 for none
		wantStatus    int
	}{
		{"the announced length", int64(len(body)), 0, 0},
		{"a length too short", 3, 0, 0},
		{"a length too long", int64(len(body)) + 100, 0, 0},
		{"an unknown length", -1, 0, 0},
		{"a length past the hint", maxBodyHint + 1, 0, 0},
		{"a body over the limit whose length says less", 3, 10, http.StatusRequestEntityTooLarge},
		{"a body over the limit of unknown length", -1, 10, http.StatusRequestEntityTooLarge},
		{"a body at the limit", int64(len(body)), int64(len(body)), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", "/v1/x", io.NopCloser(strings.NewReader(body)))
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = tt.contentLength
			req.Header.Set("Content-Type", "application/json")
			if tt.limit > 0 {
				req.Body = http.MaxBytesReader(httptest.NewRecorder(), req.Body, tt.limit)
			}
			var v sample
			err = DecodeJSON(req, &v, false)
			status := 0
			if err != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("DecodeJSON = %v, not an *Error", err)
				}
				status = e.Status
			}
			if status != tt.wantStatus {
				t.Fatalf("DecodeJSON = %v (status %d), want status %d", err, status, tt.wantStatus)
			}
			if status == 0 && (v.Name != "x" || len(v.Tags) != 2) {
				t.Fatalf("decoded %+v", v)
			}
		})
	}
}
