package lambdaapp

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/backends"
	_ "github.com/clusterkeys/clusterkeys/pkg/backends/all" // the stores the tests open
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/functions"
)

const token = "lambdaapp-test-token-0123456789abcdef"

// setEnv gives the function a state directory with a token file, and
// store as its --store.
func setEnv(t *testing.T, store string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(token+",tester,ops,\"admin\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CLUSTERKEYS_STATE_DIR", dir)
	t.Setenv("CLUSTERKEYS_STORE", store)
	t.Setenv("CLUSTERKEYS_KEYS", "software")
}

// serve starts fn as a bootstrap does and serves one request through it;
// fail records the start-up error instead of exiting.
func serve(t *testing.T, fn functions.Function, r *http.Request) (*httptest.ResponseRecorder, []error) {
	t.Helper()
	h, err := start(context.Background(), fn)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	p := h.(*pending)
	var failed []error
	p.fail = func(err error) { failed = append(failed, err) }
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w, failed
}

func request(method, path, body string) *http.Request {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("Content-Type", "application/json")
	return r
}

// The backends open in the background; the first request waits for them
// and is served.
func TestFirstRequestWaitsForTheBackends(t *testing.T) {
	setEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "ck.db"))
	w, failed := serve(t, functions.Keywrap, request("POST", "/v1/keys", `{"name":"k"}`))
	if len(failed) != 0 || w.Code != http.StatusCreated {
		t.Fatalf("POST /v1/keys: %d %s, start errors %v; want 201", w.Code, w.Body, failed)
	}
}

// A start that fails in the background (here, no database server) ends
// the process at the first request with the error a start that failed
// before the Runtime API's /next gave: the function's name, the store's,
// and the cause; never the connection string's password.
func TestFailedBackgroundOpenGivesTheStartError(t *testing.T) {
	const pw = "s3cr3t-pw-lambdaapp"
	dsn := "postgres://ck:" + pw + "@/ck?host=" + filepath.Join(t.TempDir(), "no-server") + "&connect_timeout=1"
	setEnv(t, dsn)
	cfg, err := config.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	// What Run returned for it before the backends opened in the background.
	_, openErr := backends.Open(context.Background(), cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if openErr == nil {
		t.Fatal("backends.Open of a database that is not there succeeded")
	}
	want := "keywrap: " + openErr.Error()

	w, failed := serve(t, functions.Keywrap, request("POST", "/v1/keys", `{"name":"k"}`))
	if len(failed) != 1 {
		t.Fatalf("start errors %v, want one", failed)
	}
	got := failed[0]
	if got.Error() != want || !errors.Is(got, api.ErrUnavailable) {
		t.Errorf("start error %q, want %q (wrapping api.ErrUnavailable)", got, want)
	}
	if !strings.HasPrefix(got.Error(), "keywrap: open store postgres") {
		t.Errorf("start error %q does not name the function and the store", got)
	}
	if strings.Contains(got.Error(), pw) || strings.Contains(w.Body.String(), pw) {
		t.Errorf("the password leaked: %q, %s", got, w.Body)
	}
	// Were fail to return (it exits in a bootstrap), the request is not served.
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", w.Code)
	}
}

// A configuration error still stops the function before it asks for an
// event.
func TestConfigErrorBeforeTheFirstEvent(t *testing.T) {
	setEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "ck.db"))
	t.Setenv("CLUSTERKEYS_KEYS", "no-such-custody")
	_, err := start(context.Background(), functions.Keywrap)
	if err == nil || !strings.HasPrefix(err.Error(), "keywrap: config: ") {
		t.Fatalf("start: %v, want a configuration error", err)
	}
}

// A request whose invocation ends before the backends are open gets 503
// backend_unavailable.
func TestRequestEndsBeforeTheBackendsOpen(t *testing.T) {
	p := &pending{done: make(chan struct{}), fail: func(err error) { t.Errorf("fail(%v) called", err) }}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := httptest.NewRecorder()
	p.ServeHTTP(w, request("GET", "/v1/keys/k", "").WithContext(ctx))
	var prob api.Problem
	if err := json.Unmarshal(w.Body.Bytes(), &prob); err != nil || w.Code != http.StatusServiceUnavailable || prob.Code != api.CodeBackendUnavailable {
		t.Fatalf("%d %s (%v), want 503 %s", w.Code, w.Body, err, api.CodeBackendUnavailable)
	}
}
