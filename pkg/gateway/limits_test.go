package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/fakeclock"
	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
)

// blockingRoutes returns a "slow" route that waits until release is closed
// (announcing each entry on entered) and a "fast" route that answers at once.
func blockingRoutes(entered chan<- struct{}, release <-chan struct{}) []api.Route {
	return []api.Route{
		{Pattern: "POST /v1/slow", Name: "slow", Handler: func(w http.ResponseWriter, r *http.Request) error {
			entered <- struct{}{}
			<-release
			return api.WriteJSON(w, http.StatusOK, map[string]string{"ok": "slow"})
		}},
		{Pattern: "GET /v1/fast", Name: "fast", Handler: func(w http.ResponseWriter, r *http.Request) error {
			return api.WriteJSON(w, http.StatusOK, map[string]string{"ok": "fast"})
		}},
	}
}

// countingAuth counts the tokens it is asked to check.
type countingAuth struct {
	auth.Authenticator
	calls atomic.Int64
}

func (c *countingAuth) Authenticate(ctx context.Context, token string) (auth.Principal, error) {
	c.calls.Add(1)
	return c.Authenticator.Authenticate(ctx, token)
}

func newLimitedGateway(t *testing.T, l Limits, now func() time.Time, routes ...api.Route) (*Gateway, *countingAuth) {
	t.Helper()
	tf, err := auth.ParseTokenFile(strings.NewReader(adminToken + ",alice,p0,\"admin\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	ca := &countingAuth{Authenticator: tf}
	g, err := New(Config{Auth: ca, Limits: &l, Now: now}, routes...)
	if err != nil {
		t.Fatal(err)
	}
	return g, ca
}

type result struct {
	status     int
	code       string
	retryAfter string
	body       string
}

func call(t *testing.T, g http.Handler, method, path, token, remote string) result {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader("{}"))
	r.Header.Set("Content-Type", "application/json")
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	if remote != "" {
		r.RemoteAddr = remote
	}
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	body, _ := io.ReadAll(w.Result().Body)
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(body, &p)
	return result{w.Code, p.Code, w.Header().Get("Retry-After"), string(body)}
}

// fill starts n requests to the slow route and waits until all are inside
// the handler. The returned function releases them and waits for them.
func fill(t *testing.T, g http.Handler, n int, entered <-chan struct{}, release chan struct{}) func() {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if r := call(t, g, "POST", "/v1/slow", adminToken, ""); r.status != http.StatusOK {
				t.Errorf("a request within the limit got %d %s", r.status, r.code)
			}
		})
	}
	for range n {
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("requests within the limit never reached the handler")
		}
	}
	var once sync.Once
	done := func() {
		once.Do(func() { close(release); wg.Wait() })
	}
	t.Cleanup(done)
	return done
}

func TestInFlightLimits(t *testing.T) {
	tests := []struct {
		name   string
		limits Limits
		fill   int
		// what a further request of each kind gets while the slots are held
		wantSlow, wantFast, wantUnauthenticatedSlow int
		wantReason                                  string
	}{
		{
			name:     "the instance-wide limit refuses any route beyond it with 503 and Retry-After",
			limits:   Limits{MaxInFlight: 2},
			fill:     2,
			wantSlow: http.StatusServiceUnavailable, wantFast: http.StatusServiceUnavailable,
			wantUnauthenticatedSlow: http.StatusServiceUnavailable,
			wantReason:              "in_flight",
		},
		{
			name:     "a route's own limit refuses only that route, and only authenticated callers",
			limits:   Limits{MaxInFlight: 10, RouteMaxInFlight: map[string]int{"slow": 1}},
			fill:     1,
			wantSlow: http.StatusServiceUnavailable, wantFast: http.StatusOK,
			wantUnauthenticatedSlow: http.StatusUnauthorized,
			wantReason:              "in_flight_slow",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entered, release := make(chan struct{}, tt.fill+4), make(chan struct{})
			g, _ := newLimitedGateway(t, tt.limits, nil, blockingRoutes(entered, release)...)
			done := fill(t, g, tt.fill, entered, release)

			r := call(t, g, "POST", "/v1/slow", adminToken, "")
			if r.status != tt.wantSlow {
				t.Fatalf("slow route beyond the limit: got %d, want %d (%s)", r.status, tt.wantSlow, r.body)
			}
			if r.code != api.CodeOverloaded || r.retryAfter != "1" {
				t.Errorf("refusal: code %q Retry-After %q, want %q and 1", r.code, r.retryAfter, api.CodeOverloaded)
			}
			if r := call(t, g, "GET", "/v1/fast", adminToken, ""); r.status != tt.wantFast {
				t.Errorf("fast route: got %d, want %d", r.status, tt.wantFast)
			}
			if r := call(t, g, "POST", "/v1/slow", "", ""); r.status != tt.wantUnauthenticatedSlow {
				t.Errorf("unauthenticated slow: got %d, want %d", r.status, tt.wantUnauthenticatedSlow)
			}
			for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
				if r := call(t, g, "GET", path, "", ""); r.status != http.StatusOK {
					t.Errorf("%s while the limit is reached: got %d, want 200", path, r.status)
				}
			}
			m := call(t, g, "GET", "/metrics", "", "").body
			if want := `clusterkeys_http_rejected_requests_total{reason="` + tt.wantReason + `"}`; !strings.Contains(m, want) {
				t.Errorf("metrics lack %s", want)
			}
			if !strings.Contains(m, "clusterkeys_http_in_flight_requests{") {
				t.Error("metrics lack clusterkeys_http_in_flight_requests")
			}

			done()
			if r := call(t, g, "GET", "/v1/fast", adminToken, ""); r.status != http.StatusOK {
				t.Errorf("after the slots are freed: got %d, want 200", r.status)
			}
		})
	}
}

func TestDefaultLimitsBoundValidate(t *testing.T) {
	l := DefaultLimits()
	if l.MaxInFlight != DefaultMaxInFlight || l.RouteMaxInFlight[ValidateRoute] < 1 ||
		l.MaxAuthFailures != DefaultMaxAuthFailures || l.AuthFailureWindow != DefaultAuthFailureWindow {
		t.Errorf("DefaultLimits() = %+v", l)
	}
}

func TestFailedAuthenticationsAreThrottledPerAddress(t *testing.T) {
	clk := fakeclock.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	// 4 failures per 8 s: one failure allowed back every 2 s.
	g, ca := newLimitedGateway(t, Limits{MaxAuthFailures: 4, AuthFailureWindow: 8 * time.Second}, clk.Now,
		blockingRoutes(make(chan struct{}, 1), make(chan struct{}))...)
	const attacker, other = "192.0.2.7:40000", "198.51.100.9:40000"
	const bad = "wrong-token-0123456789"

	steps := []struct {
		name       string
		token      string
		remote     string
		advance    time.Duration
		wantStatus int
		wantRetry  string
		wantLookup bool // whether the token reaches the authenticator
	}{
		{"first failure", bad, attacker, 0, 401, "", true},
		{"second failure", bad, attacker, 0, 401, "", true},
		{"third failure", bad, attacker, 0, 401, "", true},
		{"a missing token is a failure too, the last one allowed", "", attacker, 0, 401, "", false},
		{"then even a good token from that address is 429, unchecked", adminToken, attacker, 0, 429, "2", false},
		{"a bad token is 429 as well, unchecked", bad, attacker, 0, 429, "2", false},
		{"another address is not affected", adminToken, other, 0, 200, "", true},
		{"another port of the attacker's address is the same client", adminToken, "192.0.2.7:40001", 0, 429, "2", false},
		{"a second later the wait is shorter", adminToken, attacker, time.Second, 429, "1", false},
		{"after window/N one attempt is back", adminToken, attacker, time.Second, 200, "", true},
		{"a success does not refill it: a failure uses it", bad, attacker, 0, 401, "", true},
		{"and the next one is throttled again", bad, attacker, 0, 429, "2", false},
		{"after the whole window every attempt is back", bad, attacker, 8 * time.Second, 401, "", true},
		{"second failure after the window", bad, attacker, 0, 401, "", true},
	}
	for _, s := range steps {
		clk.Advance(s.advance)
		before := ca.calls.Load()
		r := call(t, g, "GET", "/v1/fast", s.token, s.remote)
		if r.status != s.wantStatus || r.retryAfter != s.wantRetry {
			t.Fatalf("%s: got %d Retry-After %q (%s), want %d Retry-After %q", s.name, r.status, r.retryAfter, r.body, s.wantStatus, s.wantRetry)
		}
		if r.status == 429 && r.code != api.CodeRateLimited {
			t.Errorf("%s: code %q, want %q", s.name, r.code, api.CodeRateLimited)
		}
		if looked := ca.calls.Load() > before; looked != s.wantLookup && s.token != "" {
			t.Errorf("%s: token looked up = %v, want %v", s.name, looked, s.wantLookup)
		}
	}
	if r := call(t, g, "GET", "/healthz", "", attacker); r.status != 200 {
		t.Errorf("/healthz from a throttled address: %d, want 200", r.status)
	}
	if m := call(t, g, "GET", "/metrics", "", "").body; !strings.Contains(m, `clusterkeys_http_rejected_requests_total{reason="auth_throttled"} 5`) {
		t.Errorf("metrics do not count 5 throttled requests:\n%s", m)
	}
}

func TestAuthThrottleTableIsBounded(t *testing.T) {
	clk := fakeclock.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	g, _ := newLimitedGateway(t, Limits{MaxAuthFailures: 1, AuthFailureWindow: time.Hour, AuthTableSize: 3}, clk.Now,
		blockingRoutes(make(chan struct{}, 1), make(chan struct{}))...)
	addr := func(i int) string { return "10.0.0." + string(rune('0'+i)) + ":1" }
	for i := range 8 {
		if r := call(t, g, "GET", "/v1/fast", "bad-token-0123456789", addr(i)); r.status != 401 {
			t.Fatalf("first failure from %s: %d", addr(i), r.status)
		}
	}
	if n := g.throttle.table.Len(); n != 3 {
		t.Errorf("table holds %d addresses, want the bound 3", n)
	}
	// The most recent addresses are still throttled; the oldest were
	// forgotten (the price of bounded memory).
	if r := call(t, g, "GET", "/v1/fast", adminToken, addr(7)); r.status != 429 {
		t.Errorf("most recent address: %d, want 429", r.status)
	}
	if r := call(t, g, "GET", "/v1/fast", adminToken, addr(0)); r.status != 200 {
		t.Errorf("evicted address: %d, want 200", r.status)
	}
}

func TestClientAddr(t *testing.T) {
	tests := []struct{ remote, want string }{
		{"192.0.2.1:1234", "192.0.2.1"},
		{"192.0.2.1", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
		{"not-an-address", "not-an-address"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		if got := clientAddr(r); got != tt.want {
			t.Errorf("clientAddr(%q) = %q, want %q", tt.remote, got, tt.want)
		}
	}
}
