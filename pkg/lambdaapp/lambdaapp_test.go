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

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/backends"
	_ "github.com/clusterkeys/clusterkeys/pkg/backends/all" // the stores the tests open
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/functions"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
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

// serve starts fn as Run does, opening its backends while it serves one
// request, and returns the response and open's error.
func serve(t *testing.T, fn functions.Function, r *http.Request) (*httptest.ResponseRecorder, error) {
	t.Helper()
	p, err := start(context.Background(), fn)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	// The request comes first, as the event may at a cold start.
	served := make(chan struct{})
	w := httptest.NewRecorder()
	go func() {
		defer close(served)
		p.ServeHTTP(w, r)
	}()
	err = p.open()
	<-served
	return w, err
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
	w, err := serve(t, functions.Keywrap, request("POST", "/v1/keys", `{"name":"k"}`))
	if err != nil || w.Code != http.StatusCreated {
		t.Fatalf("POST /v1/keys: %d %s, open: %v; want 201", w.Code, w.Body, err)
	}
}

// Opening the backends beside the runtime's first /next (here, no
// database server) fails with the error Run returned when it opened them
// first: the function's name, the store's, and the cause; never the
// connection string's password. A request waiting for them gets 503.
func TestFailedBackgroundOpenGivesTheStartError(t *testing.T) {
	const pw = "s3cr3t-pw-lambdaapp"
	dsn := "postgres://ck:" + pw + "@/ck?host=" + filepath.Join(t.TempDir(), "no-server") + "&connect_timeout=1"
	setEnv(t, dsn)
	cfg, err := config.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	// What Run returned for it before the backends opened in the background.
	_, openErr := backends.Open(context.Background(), cfg, slog.New(slog.DiscardHandler), metrics.NewRegistry())
	if openErr == nil {
		t.Fatal("backends.Open of a database that is not there succeeded")
	}
	want := "keywrap: " + openErr.Error()

	w, got := serve(t, functions.Keywrap, request("POST", "/v1/keys", `{"name":"k"}`))
	if got == nil {
		t.Fatal("open succeeded")
	}
	if got.Error() != want || !errors.Is(got, api.ErrUnavailable) {
		t.Errorf("start error %q, want %q (wrapping api.ErrUnavailable)", got, want)
	}
	if !strings.HasPrefix(got.Error(), "keywrap: open store postgres") {
		t.Errorf("start error %q does not name the function and the store", got)
	}
	if strings.Contains(got.Error(), pw) || strings.Contains(w.Body.String(), pw) {
		t.Errorf("the password leaked: %q, %s", got, w.Body)
	}
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
	p := &pending{done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := httptest.NewRecorder()
	p.ServeHTTP(w, request("GET", "/v1/keys/k", "").WithContext(ctx))
	var prob api.Problem
	if err := json.Unmarshal(w.Body.Bytes(), &prob); err != nil || w.Code != http.StatusServiceUnavailable || prob.Code != api.CodeBackendUnavailable {
		t.Fatalf("%d %s (%v), want 503 %s", w.Code, w.Body, err, api.CodeBackendUnavailable)
	}
}
