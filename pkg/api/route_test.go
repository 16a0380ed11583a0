package api

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

func TestWriteJSON(t *testing.T) {
	for _, tc := range []struct {
		name     string
		v        any
		wantBody string
		wantErr  bool
	}{
		{name: "compact with a final newline", v: map[string]any{"a": 1, "b": []string{"x"}}, wantBody: `{"a":1,"b":["x"]}` + "\n"},
		{name: "an unencodable value writes nothing", v: math.Inf(1), wantErr: true},
		{name: "HTML is escaped as json.Marshal does", v: map[string]string{"a": "<b>&'\u2028"}, wantBody: `{"a":"\u003cb\u003e\u0026'\u2028"}` + "\n"},
		{name: "a PEM's newlines are escaped", v: struct {
			Certificate string `json:"certificate"`
		}{"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}, wantBody: `{"certificate":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			err := WriteJSON(rec, http.StatusCreated, tc.v)
			if tc.wantErr {
				if err == nil || rec.Body.Len() != 0 || rec.Header().Get("Content-Type") != "" {
					t.Fatalf("err %v, body %q, headers %v: want an error and nothing written", err, rec.Body, rec.Header())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rec.Code != http.StatusCreated || rec.Body.String() != tc.wantBody {
				t.Errorf("got %d %q, want 201 %q", rec.Code, rec.Body, tc.wantBody)
			}
			if got := rec.Header().Get("Content-Length"); got != strconv.Itoa(len(tc.wantBody)) {
				t.Errorf("Content-Length %q, want %d", got, len(tc.wantBody))
			}
			if rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("headers %v", rec.Header())
			}
		})
	}
}

// TestWriteJSONIsMarshal checks that WriteJSON's body is json.Marshal's
// and a newline, also for a body larger than a pooled buffer keeps, and
// after one (the pool hands out emptied buffers).
func TestWriteJSONIsMarshal(t *testing.T) {
	for _, v := range []any{
		map[string]any{"n": 1.5, "s": "é\x00<", "l": []int{1, 2}},
		map[string]string{"big": strings.Repeat("x", 2*maxPooledResponse)},
		[]string{"after", "a big one"},
		nil,
	} {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		if err := WriteJSON(rec, http.StatusOK, v); err != nil {
			t.Fatal(err)
		}
		if got := rec.Body.String(); got != string(want)+"\n" {
			t.Fatalf("body %.80q, want %.80q", got, string(want)+"\n")
		}
	}
}
