package lambdahttp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/clusterkeys/clusterkeys/internal/need"
)

func loadEvent(t testing.TB, name string) events.APIGatewayV2HTTPRequest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// seen records what the handler received.
type seen struct {
	method, uri, host, remote, requestID, auth, cookie string
	body                                               []byte
	contentLength                                      int64
}

func recorder(s *seen, status int, ct string, body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		*s = seen{r.Method, r.URL.RequestURI(), r.Host, r.RemoteAddr, r.Header.Get("X-Request-Id"),
			r.Header.Get("Authorization"), r.Header.Get("Cookie"), b, r.ContentLength}
		w.Header().Set("Content-Type", ct)
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.Header().Add("Vary", "Accept")
		w.Header().Add("Vary", "Origin")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	})
}

func TestHandler(t *testing.T) {
	tests := []struct {
		name           string
		event          string
		respCT         string
		respBody       []byte
		wantMethod     string
		wantURI        string
		wantRemote     string
		wantRequestID  string
		wantCookie     string
		wantBody       []byte
		wantBase64Resp bool
	}{
		{
			name:  "a JSON request reaches the handler whole and its JSON answer travels as text",
			event: "sign-request.json", respCT: "application/problem+json", respBody: []byte(`{"code":"x"}`),
			wantMethod: "POST", wantURI: "/v1/clusters/prod-1/certificates?dry_run=false&x=1",
			wantRemote: "203.0.113.7:0", wantRequestID: "JKJaXmPLvHcESHA=",
			wantBody: []byte("{\"csr\":\"x\",\"profile\":\"client\"}\n"),
		},
		{
			name:  "a base64 body is decoded, cookies joined, and a binary answer is base64",
			event: "binary-request.json", respCT: "application/octet-stream", respBody: []byte{0, 1, 2, 0xff},
			wantMethod: "POST", wantURI: "/v1/tls/validate", wantRemote: "198.51.100.9:0",
			wantRequestID: "client-chosen-id", wantCookie: "session=abc; theme=dark",
			wantBody: []byte{0, 1, 2, 3, 0xff}, wantBase64Resp: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s seen
			resp, err := Handler(recorder(&s, 418, tt.respCT, tt.respBody))(context.Background(), loadEvent(t, tt.event))
			if err != nil {
				t.Fatal(err)
			}
			if s.method != tt.wantMethod || s.uri != tt.wantURI || s.remote != tt.wantRemote ||
				s.requestID != tt.wantRequestID || s.cookie != tt.wantCookie {
				t.Errorf("handler saw %+v", s)
			}
			if !bytes.Equal(s.body, tt.wantBody) || s.contentLength != int64(len(tt.wantBody)) {
				t.Errorf("body %q (length %d), want %q", s.body, s.contentLength, tt.wantBody)
			}
			if resp.StatusCode != 418 || resp.IsBase64Encoded != tt.wantBase64Resp {
				t.Errorf("response status %d base64 %v", resp.StatusCode, resp.IsBase64Encoded)
			}
			got := []byte(resp.Body)
			if resp.IsBase64Encoded {
				got, _ = base64.StdEncoding.DecodeString(resp.Body)
			}
			if !bytes.Equal(got, tt.respBody) {
				t.Errorf("response body %q, want %q", got, tt.respBody)
			}
			if len(resp.Cookies) != 2 || resp.Headers["Set-Cookie"] != "" {
				t.Errorf("Set-Cookie must travel in cookies: %v / %v", resp.Cookies, resp.Headers)
			}
			if resp.Headers["Vary"] != "Accept,Origin" {
				t.Errorf("repeated headers = %q", resp.Headers["Vary"])
			}
		})
	}
}

func TestHandlerRefusesAMalformedEvent(t *testing.T) {
	for _, tt := range []struct {
		name string
		ev   events.APIGatewayV2HTTPRequest
	}{
		{"no method", events.APIGatewayV2HTTPRequest{RawPath: "/x"}},
		{"a body that is not base64", func() events.APIGatewayV2HTTPRequest {
			ev := loadEvent(t, "binary-request.json")
			ev.Body = "%%%"
			return ev
		}()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })
			resp, err := Handler(h)(context.Background(), tt.ev)
			if err != nil || resp.StatusCode != 400 || called {
				t.Fatalf("resp %d err %v called %v", resp.StatusCode, err, called)
			}
		})
	}
}

func TestFixturesRoundTrip(t *testing.T) {
	for _, name := range []string{"sign-request.json", "binary-request.json"} {
		ev := loadEvent(t, name)
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		var again events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatal(err)
		}
		if again.RawPath != ev.RawPath || again.Body != ev.Body || again.RequestContext.HTTP.Method != ev.RequestContext.HTTP.Method {
			t.Errorf("%s does not round trip", name)
		}
	}
}

func ExampleHandler() {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"path":%q}`, r.URL.Path)
	})
	ev := events.APIGatewayV2HTTPRequest{
		RawPath:        "/healthz",
		RequestContext: events.APIGatewayV2HTTPRequestContext{HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "GET"}},
	}
	resp, _ := Handler(h)(context.Background(), ev)
	fmt.Println(resp.StatusCode, strings.TrimSpace(resp.Body))
	// Output: 200 {"path":"/healthz"}
}

func BenchmarkHandler(b *testing.B) {
	ev := loadEvent(b, "sign-request.json")
	var s seen
	h := Handler(recorder(&s, 201, "application/json", []byte(`{"certificate":"..."}`)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h(context.Background(), ev); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAWSOwnEvents runs the HTTP API 2.0 request events that aws-lambda-go
// keeps as its own test data (captured from API Gateway, read from the
// module in the build cache, not copied here) through Request, and checks
// each field the adapter reads against the raw JSON.
func TestAWSOwnEvents(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/aws/aws-lambda-go").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		need.Missing(t, fmt.Sprintf("cannot find the aws-lambda-go module (go list -m: %v): run go mod download", err))
	}
	files, err := filepath.Glob(filepath.Join(dir, "events", "testdata", "apigw-v2-request-*.json"))
	if err != nil || len(files) < 3 {
		t.Fatalf("aws-lambda-go's HTTP API events: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var ev events.APIGatewayV2HTTPRequest
			if err := json.Unmarshal(b, &ev); err != nil {
				t.Fatal(err)
			}
			r, err := Request(context.Background(), ev)
			if err != nil {
				t.Fatalf("Request: %v", err)
			}
			wantURI := ev.RawPath
			if wantURI == "" {
				wantURI = "/"
			}
			if ev.RawQueryString != "" {
				wantURI += "?" + ev.RawQueryString
			}
			if r.Method != ev.RequestContext.HTTP.Method || r.URL.RequestURI() != wantURI {
				t.Errorf("request %s %s, event %s %s", r.Method, r.URL.RequestURI(), ev.RequestContext.HTTP.Method, wantURI)
			}
			if ev.RawQueryString != "" && len(r.URL.Query()) == 0 {
				t.Errorf("query %q lost", ev.RawQueryString)
			}
			for k, v := range ev.Headers {
				if got := r.Header.Get(k); got != v {
					t.Errorf("header %s = %q, event %q", k, got, v)
				}
			}
			if len(ev.Cookies) > 0 && len(r.Cookies()) != len(ev.Cookies) {
				t.Errorf("cookies %v, event %v", r.Cookies(), ev.Cookies)
			}
			body, _ := io.ReadAll(r.Body)
			if string(body) != ev.Body || r.ContentLength != int64(len(ev.Body)) {
				t.Errorf("body %q (length %d), event %q", body, r.ContentLength, ev.Body)
			}
			if ev.RequestContext.RequestID != "" && r.Header.Get("X-Request-Id") == "" {
				t.Error("the request id was not carried")
			}
		})
	}
}
