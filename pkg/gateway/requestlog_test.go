package gateway

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
)

// requestLogGateway is the echo route behind a gateway logging as text at
// level to buf.
func requestLogGateway(t *testing.T, level slog.Level, buf *bytes.Buffer) *Gateway {
	t.Helper()
	tf, err := auth.ParseTokenFile(strings.NewReader(memberToken + ",bob,p1,\"member\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{Auth: tf, Logger: slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: level}))},
		api.Route{Pattern: "POST /v1/echo", Name: "echo", Handler: func(w http.ResponseWriter, r *http.Request) error {
			var req echoReq
			if err := api.DecodeJSON(r, &req, false); err != nil {
				return err
			}
			return api.WriteJSON(w, http.StatusOK, map[string]string{"name": req.Name})
		}})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func echoRequest(g *Gateway) int {
	req := httptest.NewRequest("POST", "/v1/echo", strings.NewReader(`{"name":"x"}`))
	req.Header.Set("Authorization", "Bearer "+memberToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", "req-log-test")
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, req)
	return rec.Code
}

// TestRequestLogLine checks the request line of an authenticated route,
// attribute by attribute and in order (it is built with LogAttrs behind
// Enabled), and that a level above info writes none.
func TestRequestLogLine(t *testing.T) {
	var buf bytes.Buffer
	g := requestLogGateway(t, slog.LevelInfo, &buf)
	if code := echoRequest(g); code != 200 {
		t.Fatalf("status %d", code)
	}
	want := regexp.MustCompile(`^time=\S+ level=INFO msg=request method=POST route=echo path=/v1/echo status=200 duration_ms=[0-9.]+ request_id=req-log-test user=bob\n$`)
	if !want.Match(buf.Bytes()) {
		t.Errorf("request line %q does not match %s", buf.String(), want)
	}

	var quiet bytes.Buffer
	g = requestLogGateway(t, slog.LevelWarn, &quiet)
	if code := echoRequest(g); code != 200 {
		t.Fatalf("status %d", code)
	}
	if quiet.Len() != 0 {
		t.Errorf("a warn-level logger wrote %q", quiet.String())
	}
}
