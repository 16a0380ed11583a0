package keystone

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// fakeIdentity answers GET /v3/auth/tokens like Keystone for this
// package's own logic (the real Keystone is exercised by test/e2e).
func fakeIdentity(t *testing.T, status int, expires time.Time) (*gophercloud.ServiceClient, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("X-Subject-Token") == "" || r.Header.Get("X-Auth-Token") != "service-token" {
			w.WriteHeader(400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"token":{"expires_at":%q,"user":{"id":"u1","name":"alice"},
			"project":{"id":"p-123","name":"team-a"},"roles":[{"id":"r1","name":"member"},{"id":"r2","name":"reader"}]}}`,
			expires.UTC().Format("2006-01-02T15:04:05.000000Z"))
	}))
	t.Cleanup(srv.Close)
	pc := &gophercloud.ProviderClient{TokenID: "service-token"}
	pc.SetToken("service-token")
	return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: srv.URL + "/v3/"}, &calls
}

func TestAuthenticateMapsAndCaches(t *testing.T) {
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	sc, calls := fakeIdentity(t, 200, now.Add(time.Hour))
	a := newAuthenticator(sc, Config{CacheTTL: 10 * time.Second, Now: clock})
	p, err := a.Authenticate(context.Background(), "user-token")
	if err != nil {
		t.Fatal(err)
	}
	if p.User != "alice" || p.Project != "p-123" || len(p.Roles) != 2 || !p.CanWrite("p-123") {
		t.Fatalf("principal = %+v", p)
	}
	if _, err := a.Authenticate(context.Background(), "user-token"); err != nil || calls.Load() != 1 {
		t.Fatalf("second call: %v, %d Keystone calls, want a cache hit", err, calls.Load())
	}
	now = now.Add(11 * time.Second)
	if _, err := a.Authenticate(context.Background(), "user-token"); err != nil || calls.Load() != 2 {
		t.Fatalf("after the TTL: %v, %d calls, want a new validation", err, calls.Load())
	}
}

func TestCacheNeverOutlivesTheToken(t *testing.T) {
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	sc, calls := fakeIdentity(t, 200, now.Add(2*time.Second))
	a := newAuthenticator(sc, Config{CacheTTL: time.Minute, Now: func() time.Time { return now }})
	if _, err := a.Authenticate(context.Background(), "tok"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(3 * time.Second)
	_, _ = a.Authenticate(context.Background(), "tok")
	if calls.Load() != 2 {
		t.Fatal("a cached validation outlived the token's expiry")
	}
}

func TestExpiredTokenIsNotServedFromTheCache(t *testing.T) {
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	expiry := now.Add(2 * time.Second)
	sc, calls := fakeIdentity(t, 200, expiry)
	a := newAuthenticator(sc, Config{CacheTTL: time.Hour, Now: func() time.Time { return now }})
	if _, err := a.Authenticate(context.Background(), "tok"); err != nil {
		t.Fatal(err)
	}
	now = expiry.Add(time.Second)
	// Keystone's answer still says the old expiry, now in the past.
	if _, err := a.Authenticate(context.Background(), "tok"); !errors.Is(err, api.ErrUnauthenticated) {
		t.Fatalf("an expired token: err = %v, want unauthenticated", err)
	}
	if calls.Load() != 2 {
		t.Fatalf("%d Keystone calls, want 2: the expired entry must not answer", calls.Load())
	}
}

func TestConcurrentRequestsWithOneTokenMakeOneKeystoneCall(t *testing.T) {
	sc, calls := fakeIdentity(t, 200, time.Now().Add(time.Hour))
	release := make(chan struct{})
	inner := sc.ProviderClient.HTTPClient.Transport
	if inner == nil {
		inner = http.DefaultTransport
	}
	// Hold every validation until all requesters have started, so that
	// they all miss the cache while the first validation is in flight.
	sc.ProviderClient.HTTPClient.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		<-release
		return inner.RoundTrip(r)
	})
	a := newAuthenticator(sc, Config{})
	const n = 16
	var started, done sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			p, err := a.Authenticate(context.Background(), "one-token")
			if err == nil && p.User != "alice" {
				err = fmt.Errorf("principal %+v", p)
			}
			errs <- err
		}()
	}
	started.Wait()
	runtime.Gosched()
	close(release)
	done.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("%d concurrent requests with one uncached token made %d Keystone calls, want 1", n, got)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestKeystoneAnswersMapToCodes(t *testing.T) {
	for _, tt := range []struct {
		status int
		want   error
	}{{404, api.ErrUnauthenticated}, {401, api.ErrUnauthenticated}, {403, api.ErrBackend}, {500, api.ErrUnavailable}, {503, api.ErrUnavailable}} {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			sc, _ := fakeIdentity(t, tt.status, time.Now().Add(time.Hour))
			_, err := newAuthenticator(sc, Config{}).Authenticate(context.Background(), "tok")
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("an empty token never reaches Keystone", func(t *testing.T) {
		sc, calls := fakeIdentity(t, 200, time.Now().Add(time.Hour))
		if _, err := newAuthenticator(sc, Config{}).Authenticate(context.Background(), ""); !errors.Is(err, api.ErrUnauthenticated) || calls.Load() != 0 {
			t.Fatalf("err = %v, calls %d", err, calls.Load())
		}
	})
}

func TestCacheStaysBounded(t *testing.T) {
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	sc, calls := fakeIdentity(t, 200, now.Add(time.Hour))
	const size = 50
	a := newAuthenticator(sc, Config{CacheTTL: time.Minute, CacheSize: size, Now: func() time.Time { return now }})
	for i := range 10 * size {
		if _, err := a.Authenticate(context.Background(), fmt.Sprintf("token-%d", i)); err != nil {
			t.Fatal(err)
		}
		if n := a.cache.Len(); n > size {
			t.Fatalf("after %d distinct tokens the cache holds %d entries, bound %d", i+1, n, size)
		}
	}
	if calls.Load() != 10*size {
		t.Fatalf("%d Keystone calls for %d distinct tokens", calls.Load(), 10*size)
	}
	// The newest token is still cached: eviction made room, not a flush.
	if _, err := a.Authenticate(context.Background(), fmt.Sprintf("token-%d", 10*size-1)); err != nil || calls.Load() != 10*size {
		t.Fatalf("the newest token was not served from the cache: %v, %d calls", err, calls.Load())
	}
}

// scopedIdentity answers every token validation with body as the token.
func scopedIdentity(t *testing.T, body string) *gophercloud.ServiceClient {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token":{"expires_at":"2099-01-01T00:00:00.000000Z","user":{"id":"u1","name":"alice"},%s}}`, body)
	}))
	t.Cleanup(srv.Close)
	pc := &gophercloud.ProviderClient{}
	pc.SetToken("service-token")
	return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: srv.URL + "/v3/"}
}

func TestAdminCountsEverywhereOnlyInTheAdminProjectOrSystemScope(t *testing.T) {
	const (
		adminRoles  = `"roles":[{"id":"r0","name":"admin"},{"id":"r1","name":"member"},{"id":"r2","name":"reader"}]`
		memberRoles = `"roles":[{"id":"r1","name":"member"},{"id":"r2","name":"reader"}]`
		defaultDom  = `"domain":{"id":"default","name":"Default"}`
	)
	tests := []struct {
		name         string
		adminProject string
		body         string
		wantProject  string
		wantAdmin    bool // global admin
		wantOwnWrite bool // may change its own project's objects
	}{
		{"an admin of the admin project, by name in Default, is global", "admin",
			`"project":{"id":"pid-admin","name":"admin",` + defaultDom + `},` + adminRoles, "pid-admin", true, true},
		{"an admin of the admin project, by id, is global", "pid-admin",
			`"project":{"id":"pid-admin","name":"ops",` + defaultDom + `},` + adminRoles, "pid-admin", true, true},
		{"an admin of the admin project, by domain/name, is global", "Ops/admin",
			`"project":{"id":"pid-x","name":"admin","domain":{"id":"d-ops","name":"Ops"}},` + adminRoles, "pid-x", true, true},
		{"a project named admin in another domain is not the admin project", "admin",
			`"project":{"id":"pid-y","name":"admin","domain":{"id":"d-other","name":"Other"}},` + adminRoles, "pid-y", false, true},
		{"an admin of another project is that project's admin only", "admin",
			`"project":{"id":"p-123","name":"team-a",` + defaultDom + `},` + adminRoles, "p-123", false, true},
		{"with no admin project only system scope is global", "",
			`"project":{"id":"pid-admin","name":"admin",` + defaultDom + `},` + adminRoles, "pid-admin", false, true},
		{"a system-scoped admin is global", "admin",
			`"system":{"all":true},` + adminRoles, "", true, true},
		{"a system-scoped member owns nothing", "admin",
			`"system":{"all":true},` + memberRoles, "", false, false},
		{"a domain-scoped admin owns nothing", "admin",
			`"domain":{"id":"default","name":"Default"},` + adminRoles, "", false, false},
		{"a domain-scoped member owns nothing", "admin",
			`"domain":{"id":"default","name":"Default"},` + memberRoles, "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAuthenticator(scopedIdentity(t, tt.body), Config{AdminProject: tt.adminProject})
			p, err := a.Authenticate(context.Background(), "tok")
			if err != nil {
				t.Fatal(err)
			}
			if p.Project != tt.wantProject || p.IsAdmin() != tt.wantAdmin {
				t.Fatalf("principal %+v: project %q admin %v, want %q %v", p, p.Project, p.IsAdmin(), tt.wantProject, tt.wantAdmin)
			}
			if got := p.CanWrite(p.Project); got != tt.wantOwnWrite {
				t.Errorf("CanWrite(own project %q) = %v", p.Project, got)
			}
			if got := p.CanWrite("someone-else"); got != tt.wantAdmin {
				t.Errorf("CanWrite(another project) = %v", got)
			}
			if got := p.CanRead(""); got != tt.wantAdmin {
				t.Errorf("CanRead(the empty project) = %v", got)
			}
			_, err = p.AuthorizeCreate("")
			if tt.wantProject == "" && !tt.wantAdmin && api.ErrorFor(err).Code != api.CodeProjectRequired {
				t.Errorf("AuthorizeCreate with no project = %v, want project_required", err)
			}
		})
	}
}
