package api

import (
	"reflect"
	"strings"
	"testing"
)

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

// TestStrictCleanNeverHidesARefusal checks the promise checkStrict relies
// on: when strictClean says a body is clean, the long walk finds nothing
// to refuse either.
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
