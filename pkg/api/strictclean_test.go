package api

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// strictClean is strictScanned on a body json.Valid accepts: the promise
// the fast walk makes is about valid bodies.
func strictClean(body []byte, t reflect.Type) bool {
	return json.Valid(body) && strictScanned(body, t)
}

// strictCleanBodies are bodies for the types of decode_test.go: clean ones
// and every kind of refusal, escape and nesting.
var strictCleanBodies = []string{
	`{"name":"a","count":2}`, `{"nam":"a"}`, `{"count":"2"}`, `{"name":"a"`, `{name:1}`, `{}{}`, `[]`, ``, `null`,
	`{"na\u006de":"a"}`, `{"Name":"a"}`, `{"tag\u017f":["x"]}`, `{"name":"a","name":"b"}`, `{"x":1,"x":2}`,
	`{"name":"a","na\u006de":"b"}`, `{"name":"a","x":1,"name":"b"}`, `{"x":1,"name":}`, `{"name":"a","name":"b"} {}`,
	` { "name" : "a\"b\\" , "count" : -1.5e3 , "tags" : [ "x" , "y\u0000" ] } `, `{"tags":null}`, `{"tags":[]}`,
	`{"name":"é"}`, `{"é":1}`, "{\"name\":\"a\"}\n", `{"count":1e400}`, `"a"`, `1`, `true`, `{"tags":[1,[2,{"a":"}"}]]}`,
	`{"extra":"e","inner":{"id":"a","n":1},"ptr":{"id":"b"},"list":[{"id":"c"}],"ptr_list":[null,{"id":"d"}],
		"grid":[[{"id":"e"}],[]],"array":[{"id":"f"},{"id":"g"}],"map":{"K":{"id":"h"}},"raw":{"A":1,"A":2,"a":3},
		"any":{"B":[1,{"b":2,"b":3}]},"when":"2024-01-02T03:04:05Z","NoTag":"n"}`,
	`{"inner":{"ID":"a"}}`, `{"list":[{"id":"a"},{"id":"b","iD":"c"}]}`, `{"ptr_list":[null,{"x":1}]}`,
	`{"grid":[[],[{"id":"a","id":"b"}]]}`, `{"inner":{},"inner":{}}`, `{"embedded":{"extra":"e"}}`, `{"Skip":"s"}`,
	`{"map":{"ID":{"id":"a"},"id":{"id":"b"}}}`, `{"raw":1e400}`, `{"inner":"a"}`, `{"list":{"id":"a","ID":"b"}}`,
	`{"inner":[{"x":1}]}`, `{"list":[{"id":1}]}`, `{"inner":{"X":1},"list":[{"id":"a",}]}`,
	strings.Repeat(`{"list":[`, 40) + strings.Repeat(`]}`, 40),
	strings.Repeat(`[`, 100) + strings.Repeat(`]`, 100),
}

// TestStrictCleanNeverHidesARefusal checks the promise DecodeJSONBytes
// relies on: when strictScanned says a valid body is clean, the long walk
// finds nothing to refuse either.
func TestStrictCleanNeverHidesARefusal(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[*sample](), reflect.TypeFor[*nested](), reflect.TypeFor[*[]sample]()} {
		for _, body := range strictCleanBodies {
			if strictClean([]byte(body), typ) {
				if err := walkStrict([]byte(body), typ); err != nil {
					t.Errorf("%v %q: strictClean says clean, the long walk says %v", typ, body, err)
				}
			}
		}
	}
}

// TestStrictCleanTakesCleanBodies checks that plain, valid bodies take the
// fast walk (and so never tokenise twice) and refused ones do not.
func TestStrictCleanTakesCleanBodies(t *testing.T) {
	for _, tc := range []struct {
		body string
		typ  reflect.Type
		want bool
	}{
		{`{"name":"a","count":2,"tags":["x"]}`, reflect.TypeFor[*sample](), true},
		{` {"name" : "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\u0041\"x\\\n"} `, reflect.TypeFor[*sample](), true},
		{`{"inner":{"id":"a"},"list":[{"id":"b"}],"raw":{"A":1,"A":2},"any":{"x":[1,2]},"map":{"K":{}}}`, reflect.TypeFor[*nested](), true},
		{`{"tags":["a\\","b\\\"\\\\","\"\""],"name":"n\\","count":1}`, reflect.TypeFor[*sample](), true},
		{`{"tags":["a\\"],"name":"x","name":"y"}`, reflect.TypeFor[*sample](), false},
		{`{"name":"a","name":"b"}`, reflect.TypeFor[*sample](), false},
		{`{"nam":"a"}`, reflect.TypeFor[*sample](), false},
		{`{"list":[{"ID":"b"}]}`, reflect.TypeFor[*nested](), false},
		{`{"name":"a"`, reflect.TypeFor[*sample](), false},
		{`{"na\u006de":"a"}`, reflect.TypeFor[*sample](), false}, // the long way decodes the key
	} {
		if got := strictClean([]byte(tc.body), tc.typ); got != tc.want {
			t.Errorf("strictClean(%q) = %v, want %v", tc.body, got, tc.want)
		}
	}
}

// FuzzStrictClean looks for a body strictClean calls clean that the long
// walk refuses.
func FuzzStrictClean(f *testing.F) {
	for _, b := range strictCleanBodies {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, typ := range []reflect.Type{reflect.TypeFor[*sample](), reflect.TypeFor[*nested]()} {
			if strictClean([]byte(body), typ) {
				if err := walkStrict([]byte(body), typ); err != nil {
					t.Fatalf("%v %q: strictClean says clean, the long walk says %v", typ, body, err)
				}
			}
		}
	})
}

// decodeReference is DecodeJSONBytes as it was before its fast path: the
// strict walk (fast or long), then a Decoder with DisallowUnknownFields and
// a refusal of trailing data. DecodeJSONBytes must answer exactly as it
// does, whatever the body.
func decodeReference(body []byte, v any) error {
	if t := reflect.TypeOf(v); t != nil && t.Kind() == reflect.Pointer && !strictClean(body, t) {
		if err := walkStrict(body, t); err != nil {
			return err
		}
	}
	return decodeStrictly(body, v)
}

// sameDecode fails t unless DecodeJSONBytes and decodeReference give the
// same refusal (status, code, detail, fields) or the same value for body,
// for a fresh value of each of types.
func sameDecode(t *testing.T, body []byte, types ...reflect.Type) {
	t.Helper()
	for _, typ := range types {
		got, want := reflect.New(typ).Interface(), reflect.New(typ).Interface()
		gotErr, wantErr := DecodeJSONBytes(body, got), decodeReference(body, want)
		var ge, we *Error
		switch {
		case (gotErr == nil) != (wantErr == nil):
			t.Fatalf("%v %q: err = %v, before = %v", typ, body, gotErr, wantErr)
		case gotErr == nil:
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%v %q: decoded %+v, before %+v", typ, body, got, want)
			}
		case !errors.As(gotErr, &ge) || !errors.As(wantErr, &we):
			t.Fatalf("%v %q: err = %v, before = %v: not *Error", typ, body, gotErr, wantErr)
		case ge.Status != we.Status || ge.Code != we.Code || ge.Detail != we.Detail || !reflect.DeepEqual(ge.Fields, we.Fields):
			t.Fatalf("%v %q: err = %+v, before = %+v", typ, body, ge, we)
		}
	}
}

// onlyStructs is a type the strict walk covers entirely: DecodeJSONBytes
// decodes it with json.Unmarshal alone.
type onlyStructs struct {
	Name  string    `json:"name"`
	Inner inner     `json:"inner"`
	List  []*inner  `json:"list"`
	Grid  [][]inner `json:"grid"`
	When  time.Time `json:"when"`
	Raw   json.RawMessage
	Tags  map[string][]string `json:"tags"`
	Next  *onlyStructs        `json:"next"`
}

// decodeTypes are the types the equivalence checks decode into: some the
// fast path decodes with json.Unmarshal alone, some it does not.
var decodeTypes = []reflect.Type{
	reflect.TypeFor[sample](), reflect.TypeFor[nested](), reflect.TypeFor[onlyStructs](),
	reflect.TypeFor[[]sample](), reflect.TypeFor[map[string]inner](), reflect.TypeFor[any](),
}

var decodeBodies = append([]string{
	`{"name":"a"} x`, `{"name":"a"}]`, `{"name":"a"}{"name":"b"}`, `{"name":"a"}  ` + "\n\t", `{"name":"a"}` + "\x00",
	`{"name":"a" "count":1}`, `{"name" "a"}`, `{"name":"a",}`, `{"name":"a"`, `{"name":"\x01"}`, "{\"name\":\"\xff\"}",
	`{"count":1e400}`, `{"count":"x","name":1}`, `{"name":"a","inner":{"id":1},"next":{"name":2}}`,
	`{"next":{"next":{"inner":{"ID":"x"}}}}`, `{"next":{"next":{"inner":{"id":"x","id":"y"}}}}`, `{"tags":{"A":["x"],"A":["y"]}}`,
	`{"list":[null,{"id":"a"},{"x":1}]}`, `{"grid":[[{"n":1}],[{"n":"2"}]]}`, `{"when":"yesterday"}`, `{"Raw":{"a":1,"a":2}}`,
	`{"map":{"K":{"X":1}}}`, `{"any":{"a":1}}`, `{"K":{"id":"a","X":1}}`, `[{"name":"a"},{"nam":"b"}]`, `[{"name":"a"}] [`,
	`{"a":tru}`, `{"a":nul}`, `{"count":01}`, `{"count":-}`, `{"name":"\u12"}`, `"\ud800"`, `{"name":"a"}` + strings.Repeat(" ", 100),
}, strictCleanBodies...)

// TestDecodeJSONBytesAnswersAsBefore checks the fast path against the
// reference on every body of the decode tests, valid or not.
func TestDecodeJSONBytesAnswersAsBefore(t *testing.T) {
	for _, body := range decodeBodies {
		sameDecode(t, []byte(body), decodeTypes...)
	}
}

// FuzzDecodeJSONBytesAnswersAsBefore looks for a body on which the fast
// path answers otherwise than the reference (and, through strictScanned on
// invalid bodies, for a walk that does not end).
func FuzzDecodeJSONBytesAnswersAsBefore(f *testing.F) {
	for _, b := range decodeBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sameDecode(t, body, decodeTypes...)
	})
}

// TestStrictCovers checks which types json.Unmarshal alone decodes after
// the scan: those with no struct the walk cannot reach.
func TestStrictCovers(t *testing.T) {
	type selfRef *any
	type cyclic struct {
		Next []*cyclic `json:"next"`
	}
	tests := []struct {
		name string
		typ  reflect.Type
		want bool
	}{
		{"a flat struct", reflect.TypeFor[*sample](), true},
		{"structs in slices, pointers and arrays", reflect.TypeFor[*onlyStructs](), true},
		{"a struct that refers to itself", reflect.TypeFor[*cyclic](), true},
		{"a map of strings", reflect.TypeFor[*map[string]string](), true},
		{"a map of structs", reflect.TypeFor[*map[string]inner](), false},
		{"a map of slices of structs", reflect.TypeFor[*map[string][]inner](), false},
		{"a struct with a map of structs", reflect.TypeFor[*nested](), false},
		{"an interface", reflect.TypeFor[*any](), false},
		{"a pointer to an interface", reflect.TypeFor[*selfRef](), false},
		{"raw JSON decodes itself", reflect.TypeFor[*map[string]json.RawMessage](), true},
		{"time decodes itself", reflect.TypeFor[*map[string]time.Time](), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strictCovers(tt.typ); got != tt.want {
				t.Fatalf("strictCovers(%v) = %v, want %v", tt.typ, got, tt.want)
			}
		})
	}
}
