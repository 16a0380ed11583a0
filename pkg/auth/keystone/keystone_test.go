package keystone

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
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
		a.mu.Lock()
		n := len(a.cache)
		a.mu.Unlock()
		if n > size {
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
