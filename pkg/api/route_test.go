package api

import (
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
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
