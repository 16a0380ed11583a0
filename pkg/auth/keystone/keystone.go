// Package keystone authenticates requests with OpenStack Keystone: a token
// from X-Auth-Token or Authorization: Bearer is validated against Keystone
// (identity v3, GET /v3/auth/tokens) with clusterkeys' own service
// credentials, and mapped onto the same policy as the static token file:
// the token's project is the principal's project and Keystone's default
// roles admin, member and reader keep their names (implied roles included,
// as Keystone lists them).
//
// The admin role counts everywhere only on a system-scoped token or on a
// token scoped to the admin project (Config.AdminProject); an admin of any
// other project is an admin of that project only, which clusterkeys treats
// as a member there (Keystone's own lesson, bug 968696). A domain- or
// system-scoped token carries no project, so it owns nothing.
//
// Validations are cached briefly in a bounded LRU, keyed by a SHA-256
// digest of the token (never the token), never past the token's own
// expiry; concurrent requests with one uncached token share one Keystone
// call. When Keystone cannot be reached the authenticator fails closed:
// api.ErrUnavailable, 503, never a guess.
package keystone

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/sync/singleflight"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/openstackauth"
)

// Config says where the service credentials come from and how long to cache.
type Config struct {
	// Cloud names a clouds.yaml entry (OS_CLOUD); empty reads OS_* variables.
	Cloud string
	// CacheTTL bounds how long a validation is reused; 10 s when 0. A
	// revoked token keeps working for at most this long.
	CacheTTL time.Duration
	// CacheSize bounds the cache; 10000 entries when 0.
	CacheSize int
	// AdminProject names the project whose admins are clusterkeys' admins
	// (with a system-scoped token's admins): a project id, a project name
	// in the Default domain, or DOMAIN/NAME with DOMAIN a domain name or
	// id. Empty: only system-scoped admins are global.
	AdminProject string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Authenticator validates Keystone tokens.
type Authenticator struct {
	identity *gophercloud.ServiceClient
	adminPrj string
	ttl      time.Duration
	now      func() time.Time

	// cache holds validations by token digest. Its own TTL (one for all
	// entries, on the real clock) only frees memory; entry.expires, which
	// is also capped at the token's expiry, decides whether a hit counts.
	cache *expirable.LRU[[32]byte, entry]
	// calls merges concurrent validations of one token into one request.
	calls singleflight.Group
}

// validateTimeout bounds a Keystone validation shared by several requests:
// it runs detached from the first caller's context, so that caller giving
// up does not fail the others.
const validateTimeout = 30 * time.Second

type entry struct {
	p       auth.Principal
	expires time.Time
}

var _ auth.Authenticator = (*Authenticator)(nil)

// New logs in to Keystone with the service credentials cfg names.
func New(ctx context.Context, cfg Config) (*Authenticator, error) {
	pc, eo, err := openstackauth.Provider(ctx, cfg.Cloud)
	if err != nil {
		return nil, fmt.Errorf("keystone: %w", mapError(err))
	}
	identity, err := openstack.NewIdentityV3(pc, eo)
	if err != nil {
		return nil, fmt.Errorf("keystone: identity endpoint: %w", err)
	}
	return newAuthenticator(identity, cfg), nil
}

func newAuthenticator(identity *gophercloud.ServiceClient, cfg Config) *Authenticator {
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = 10 * time.Second
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 10000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Authenticator{
		identity: identity, adminPrj: cfg.AdminProject, ttl: cfg.CacheTTL, now: cfg.Now,
		cache: expirable.NewLRU[[32]byte, entry](cfg.CacheSize, nil, cfg.CacheTTL),
	}
}

// Authenticate validates token with Keystone, or answers from the cache.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (auth.Principal, error) {
	if token == "" || len(token) > 8192 {
		return auth.Principal{}, fmt.Errorf("keystone: malformed token: %w", api.ErrUnauthenticated)
	}
	key := sha256.Sum256([]byte(token))
	if e, ok := a.cache.Get(key); ok && a.now().Before(e.expires) {
		return e.p, nil
	}
	ch := a.calls.DoChan(string(key[:]), func() (any, error) {
		// A call that finished between our miss and this one filled the cache.
		if e, ok := a.cache.Get(key); ok && a.now().Before(e.expires) {
			return e.p, nil
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), validateTimeout)
		defer cancel()
		e, err := a.validate(ctx, token)
		if err != nil {
			return nil, err
		}
		a.cache.Add(key, e)
		return e.p, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return auth.Principal{}, r.Err
		}
		return r.Val.(auth.Principal), nil
	case <-ctx.Done():
		return auth.Principal{}, fmt.Errorf("keystone: validate token: %w: %w", api.ErrUnavailable, ctx.Err())
	}
}

// validate asks Keystone about token and maps its answer onto a principal,
// valid until the cache TTL or the token's expiry, whichever comes first.
func (a *Authenticator) validate(ctx context.Context, token string) (entry, error) {
	now := a.now()
	res := tokens.Get(ctx, a.identity, token)
	t, err := res.ExtractToken()
	if err != nil {
		return entry{}, fmt.Errorf("keystone: validate token: %w", mapError(err))
	}
	user, err := res.ExtractUser()
	if err != nil {
		return entry{}, fmt.Errorf("keystone: token user: %w", err)
	}
	roles, err := res.ExtractRoles()
	if err != nil {
		return entry{}, fmt.Errorf("keystone: token roles: %w", err)
	}
	var scope struct {
		System  map[string]any  `json:"system"`
		Project *tokens.Project `json:"project"`
	}
	if err := res.ExtractInto(&scope); err != nil {
		return entry{}, fmt.Errorf("keystone: token scope: %w", err)
	}
	p := auth.Principal{User: user.Name}
	for _, r := range roles {
		p.Roles = append(p.Roles, r.Name)
	}
	switch {
	case scope.Project != nil:
		p.Project = scope.Project.ID
		p.AdminProjectOnly = !isAdminProject(a.adminPrj, *scope.Project)
	case scope.System["all"] == true:
		// A system-scoped token: its admin role is the cloud's.
	default:
		// Domain-scoped or unscoped: no project, and an admin role on a
		// domain is not clusterkeys' admin.
		p.AdminProjectOnly = true
	}
	expires := now.Add(a.ttl)
	if !t.ExpiresAt.IsZero() && t.ExpiresAt.Before(expires) {
		expires = t.ExpiresAt
	}
	if !now.Before(expires) {
		return entry{}, fmt.Errorf("keystone: token expired: %w", api.ErrUnauthenticated)
	}
	return entry{p: p, expires: expires}, nil
}

// isAdminProject reports whether pr is the project spec names: its id, its
// name in the Default domain, or DOMAIN/NAME with DOMAIN the name or id of
// pr's domain. An empty spec names no project.
func isAdminProject(spec string, pr tokens.Project) bool {
	if spec == "" {
		return false
	}
	if pr.ID == spec {
		return true
	}
	if domain, name, ok := strings.Cut(spec, "/"); ok {
		return pr.Name == name && (pr.Domain.ID == domain || pr.Domain.Name == domain)
	}
	return pr.Name == spec && pr.Domain.ID == "default"
}

// mapError maps what Keystone said: a token it does not accept is
// unauthenticated; anything else (unreachable, 5xx) is unavailable.
func mapError(err error) error {
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		switch code.Actual {
		case http.StatusNotFound, http.StatusUnauthorized:
			return fmt.Errorf("keystone does not accept the token: %w", api.ErrUnauthenticated)
		case http.StatusForbidden:
			return fmt.Errorf("keystone refuses to let the clusterkeys service user validate tokens (give it the service role): %w", api.ErrBackend)
		}
		return fmt.Errorf("keystone answered HTTP %d: %w", code.Actual, api.ErrUnavailable)
	}
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ne) || errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("keystone unreachable: %w: %w", api.ErrUnavailable, err)
	}
	return err
}
