// Package auth says who a request comes from and what it may do.
//
// A Principal is the authenticated caller: a user, the project it acts for
// and its roles. The policy is DESIGN.md's: admin may do everything in any
// project, member may read and change its own project's objects, reader may
// only read its own project's objects.
//
// # Who owns what
//
// An object (a cluster's CA, a KEK) belongs to the project that created it.
// A principal with no project (a Keystone domain- or system-scoped token)
// owns nothing: the empty project is nobody's, so it reads, changes and
// creates nothing unless it is a global admin. An object whose project is ""
// (a KEK the KMS shim created before it had a project of its own) is
// therefore reachable by global admins only.
//
// An admin role is global unless AdminProjectOnly says it counts in the
// principal's own project only: Keystone's lesson (bug 968696) is that
// "admin" on any project must not mean admin of the whole cloud.
package auth

import (
	"context"
	"fmt"
	"net/http"
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
	// User names the caller, for logs and the certificate registry.
	User string
	// Project is the project the caller acts for; "" means none, and then
	// the caller owns nothing.
	Project string
	// Roles are the caller's roles (admin, member, reader; others are
	// ignored).
	Roles []string
	// AdminProjectOnly limits the admin role to Project, where it then
	// counts as member: Keystone sets it for an admin role on a token
	// scoped to a project other than the configured admin project. The
	// token file never sets it: its admins are the operator's own.
	AdminProjectOnly bool
}

// Authenticator checks a bearer token and returns its principal. It returns
// an error wrapping api.ErrUnauthenticated for a token it does not know, and
// api.ErrUnavailable when it cannot decide (it then fails closed).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Principal, error)
}

// IsAdmin reports whether p is a global admin: it has the admin role and
// the role is not limited to its own project.
func (p Principal) IsAdmin() bool {
	return !p.AdminProjectOnly && slices.Contains(p.Roles, RoleAdmin)
}

// HasRole reports whether p holds any of the roles clusterkeys knows
// (admin, member, reader), whatever its project: what a request that reads
// nothing stored (validating a TLS bundle) needs.
func (p Principal) HasRole() bool { return p.hasAny(RoleAdmin, RoleMember, RoleReader) }

// hasAny reports whether p has one of roles.
func (p Principal) hasAny(roles ...string) bool {
	return slices.ContainsFunc(roles, func(r string) bool { return slices.Contains(p.Roles, r) })
}

// owns reports whether project is p's own, non-empty project.
func (p Principal) owns(project string) bool {
	return p.Project != "" && project == p.Project
}

// CanRead reports whether p may read objects of project. The empty project
// is nobody's: only a global admin reads it.
func (p Principal) CanRead(project string) bool {
	if p.IsAdmin() {
		return true
	}
	return p.owns(project) && p.hasAny(RoleAdmin, RoleMember, RoleReader)
}

// CanWrite reports whether p may create or change objects of project. The
// empty project is nobody's: only a global admin changes it.
func (p Principal) CanWrite(project string) bool {
	if p.IsAdmin() {
		return true
	}
	return p.owns(project) && p.hasAny(RoleAdmin, RoleMember)
}

// AuthorizeCreate checks that p may create an object in project and
// returns the project the object belongs to: p's own when project is "".
// A non-admin with no project gets 403 project_required (it owns nothing
// and may create nothing); one naming another project, or without a role
// that writes, gets an error wrapping api.ErrForbidden. A global admin may
// create in any project, and with neither a project of its own nor one
// named, creates an object that belongs to nobody (admins only).
func (p Principal) AuthorizeCreate(project string) (string, error) {
	if project == "" {
		project = p.Project
	}
	if p.IsAdmin() {
		return project, nil
	}
	if p.Project == "" {
		return "", api.New(http.StatusForbidden, api.CodeProjectRequired,
			"the credentials carry no project, so they may create nothing; use a project-scoped token").
			Wrap(fmt.Errorf("user %q has no project: %w", p.User, api.ErrForbidden))
	}
	if project != p.Project {
		return "", fmt.Errorf("user %q may not create objects in project %q: %w", p.User, project, api.ErrForbidden)
	}
	if err := p.AuthorizeWrite(project); err != nil {
		return "", err
	}
	return project, nil
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
