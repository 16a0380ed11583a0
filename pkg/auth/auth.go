// Package auth says who a request comes from and what it may do.
//
// A Principal is the authenticated caller: a user, the project it acts for
// and its roles. The policy is DESIGN.md's: admin may do everything in any
// project, member may read and change its own project's objects, reader may
// only read its own project's objects.
package auth

import (
	"context"
	"fmt"
	"slices"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// Roles.
const (
	RoleAdmin  = "admin"
	RoleMember = "member"
	RoleReader = "reader"
)

// Principal is an authenticated caller.
type Principal struct {
	User    string
	Project string
	Roles   []string
}

// Authenticator checks a bearer token and returns its principal. It returns
// an error wrapping api.ErrUnauthenticated for a token it does not know, and
// api.ErrUnavailable when it cannot decide (it then fails closed).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Principal, error)
}

// IsAdmin reports whether p has the admin role.
func (p Principal) IsAdmin() bool { return slices.Contains(p.Roles, RoleAdmin) }

// CanRead reports whether p may read objects of project.
func (p Principal) CanRead(project string) bool {
	if p.IsAdmin() {
		return true
	}
	return project == p.Project &&
		(slices.Contains(p.Roles, RoleMember) || slices.Contains(p.Roles, RoleReader))
}

// CanWrite reports whether p may create or change objects of project.
func (p Principal) CanWrite(project string) bool {
	if p.IsAdmin() {
		return true
	}
	return project == p.Project && slices.Contains(p.Roles, RoleMember)
}

// AuthorizeRead returns nil if p may read objects of project, else an error
// wrapping api.ErrForbidden.
func (p Principal) AuthorizeRead(project string) error {
	if p.CanRead(project) {
		return nil
	}
	return fmt.Errorf("user %q may not read objects of project %q: %w", p.User, project, api.ErrForbidden)
}

// AuthorizeWrite returns nil if p may change objects of project, else an
// error wrapping api.ErrForbidden.
func (p Principal) AuthorizeWrite(project string) error {
	if p.CanWrite(project) {
		return nil
	}
	return fmt.Errorf("user %q may not change objects of project %q: %w", p.User, project, api.ErrForbidden)
}

type principalKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal the gateway authenticated. ok is false
// on a public route.
func FromContext(ctx context.Context) (p Principal, ok bool) {
	p, ok = ctx.Value(principalKey{}).(Principal)
	return p, ok
}

type tokenKey struct{}

// WithToken returns a context carrying the caller's own bearer token, for a
// backend that must act as the caller (Barbican reading the caller's TLS
// containers with the caller's Keystone token). It never leaves memory.
func WithToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// TokenFromContext returns the caller's bearer token, or "".
func TokenFromContext(ctx context.Context) string {
	s, _ := ctx.Value(tokenKey{}).(string)
	return s
}
