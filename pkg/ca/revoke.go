package ca

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// MaxListedUsers bounds GET /v1/clusters/{cluster}/users.
const MaxListedUsers = 10000

// maxUserLen bounds a user name in a revocation.
const maxUserLen = 256

// UserEntry is what one requester holds on a cluster, counted at the time
// of the listing.
type UserEntry struct {
	User    string `json:"user"`
	Project string `json:"project"`
	Valid   int    `json:"valid"`
	Revoked int    `json:"revoked"`
	Expired int    `json:"expired"`
	// LastIssued is when the newest certificate of this requester was
	// issued; absent for a revoked user without certificates.
	LastIssued *time.Time `json:"last_issued,omitempty"`
	// UserRevoked is true while a user revocation is in force: the user's
	// signs on the cluster are refused.
	UserRevoked bool `json:"user_revoked"`
}

// UserList is the answer of GET /v1/clusters/{cluster}/users.
type UserList struct {
	Cluster string      `json:"cluster"`
	Users   []UserEntry `json:"users"`
	// Truncated says there are more than MaxListedUsers entries.
	Truncated bool `json:"truncated"`
}

// RevokeRequest is the body of POST /v1/clusters/{cluster}/revocations:
// exactly one of Serial and User, and a Reason.
type RevokeRequest struct {
	// Serial is the certificate to revoke (hex, any case, colons allowed).
	Serial string `json:"serial,omitempty"`
	// User revokes every certificate this user requested on the cluster,
	// and refuses the user's later signs until the revocation is lifted.
	User string `json:"user,omitempty"`
	// Reason is an RFC 5280 reason name: keyCompromise,
	// affiliationChanged, superseded, cessationOfOperation, unspecified.
	Reason string `json:"reason"`
	// Reissue also rotates the CA and re-signs every other valid
	// certificate under the new one (admin only).
	Reissue bool `json:"reissue,omitempty"`
	// GracePeriodSeconds is how long the replaced CA stays trusted after
	// a reissue (only with Reissue); 0 by default.
	GracePeriodSeconds *int64 `json:"grace_period_seconds,omitempty"`
}

// ReissuedCertificate links a certificate to the one a reissue signed in
// its place.
type ReissuedCertificate struct {
	Serial       string `json:"serial"`
	SupersededBy string `json:"superseded_by"`
}

// RevokeResult is the answer of POST /v1/clusters/{cluster}/revocations.
type RevokeResult struct {
	Cluster string   `json:"cluster"`
	Revoked []string `json:"revoked"`
	Reason  string   `json:"reason"`
	User    string   `json:"user,omitempty"`
	// CRLNumber is the number of the CRL built after the revocation.
	CRLNumber int64 `json:"crl_number"`
	// CAGeneration is the active generation after the revocation.
	CAGeneration int `json:"ca_generation"`
	// Reissued is present with reissue: each re-issued certificate.
	Reissued *[]ReissuedCertificate `json:"reissued,omitempty"`
	// NotReissued are the certificates a reissue could not sign again
	// (recorded before the registry kept certificates).
	NotReissued []string `json:"not_reissued,omitempty"`
}

// CertificateDetail is the answer of GET
// /v1/clusters/{cluster}/certificates/{serial}: the registry entry, and
// the certificate itself.
type CertificateDetail struct {
	IssuedCertificate
	// Certificate is the PEM of the certificate, or of the newest one of
	// its reissue chain when SupersededBy is set; absent for entries
	// recorded before the registry kept certificates.
	Certificate string `json:"certificate,omitempty"`
	// SupersededBy is the serial of the newest certificate a reissue
	// signed in this one's place.
	SupersededBy string `json:"superseded_by,omitempty"`
	// RevocationReason is the reason of an explicit revocation.
	RevocationReason string `json:"revocation_reason,omitempty"`
}

// validReason reports whether r is one of store.Reasons.
func validReason(r string) bool { return slices.Contains(store.Reasons, r) }

// check validates the fields of a revocation and returns its normalized
// serial and grace period.
func (req RevokeRequest) check() (serial string, grace time.Duration, err error) {
	if (req.Serial == "") == (req.User == "") {
		return "", 0, api.Invalid(api.CodeInvalidField, "serial", "give exactly one of serial and user")
	}
	if req.Serial != "" {
		if serial, err = parseSerial(req.Serial); err != nil {
			return "", 0, err
		}
	}
	if len(req.User) > maxUserLen || hasControl(req.User) {
		return "", 0, api.Invalid(api.CodeInvalidField, "user",
			fmt.Sprintf("user must be at most %d bytes without control characters", maxUserLen))
	}
	if !validReason(req.Reason) {
		return "", 0, api.Invalid(api.CodeInvalidField, "reason",
			"reason must be one of "+strings.Join(store.Reasons, ", "))
	}
	if req.GracePeriodSeconds != nil {
		if !req.Reissue {
			return "", 0, api.Invalid(api.CodeInvalidField, "grace_period_seconds", "grace_period_seconds goes with reissue only")
		}
		s := *req.GracePeriodSeconds
		if s < 0 || s > int64(MaxGracePeriod/time.Second) {
			return "", 0, api.Invalid(api.CodeInvalidField, "grace_period_seconds",
				fmt.Sprintf("grace_period_seconds must be between 0 and %d", int64(MaxGracePeriod/time.Second)))
		}
		grace = time.Duration(s) * time.Second
	}
	return serial, grace, nil
}

func forbidden(p auth.Principal, what string) error {
	return fmt.Errorf("user %q may not %s: %w", p.User, what, api.ErrForbidden)
}

// Revoke revokes a certificate or a user on cluster (see RevokeRequest):
// a member may revoke a certificate it requested itself; another
// certificate, a user, and a reissue need the admin role. The CRLs of the
// cluster are rebuilt at once.
func (a *Authority) Revoke(ctx context.Context, cluster string, req RevokeRequest) (RevokeResult, error) {
	p, err := principal(ctx)
	if err != nil {
		return RevokeResult{}, err
	}
	if err := ValidateClusterName(cluster); err != nil {
		return RevokeResult{}, err
	}
	serial, grace, err := req.check()
	if err != nil {
		return RevokeResult{}, err
	}
	c, err := a.cluster(ctx, cluster)
	if err != nil {
		return RevokeResult{}, err
	}
	if err := p.AuthorizeWrite(c.Project); err != nil {
		return RevokeResult{}, err
	}
	if (req.User != "" || req.Reissue) && !p.IsAdmin() {
		return RevokeResult{}, forbidden(p, "revoke a user or reissue; that needs the admin role")
	}
	now := a.now()
	r := store.Revocation{Cluster: cluster, Serial: serial, User: req.User, Reason: req.Reason, By: p.User, At: now}
	if serial != "" {
		ic, err := a.st.Certificate(ctx, cluster, serial)
		if errors.Is(err, api.ErrNotFound) {
			return RevokeResult{}, api.New(http.StatusNotFound, api.CodeNotFound,
				fmt.Sprintf("cluster %q has no certificate %s", cluster, serial)).Wrap(err)
		}
		if err != nil {
			return RevokeResult{}, fmt.Errorf("read certificate %s of cluster %q: %w", serial, cluster, err)
		}
		if !p.IsAdmin() && (ic.User != p.User || ic.Project != p.Project) {
			return RevokeResult{}, forbidden(p, "revoke a certificate another user requested")
		}
	}
	if req.Reissue {
		chain, err := a.chain(ctx, cluster, serial)
		if err != nil {
			return RevokeResult{}, err
		}
		return a.reissue(ctx, p, c, r, chain, grace)
	}
	res := RevokeResult{Cluster: cluster, Reason: req.Reason, User: req.User, CAGeneration: c.Generation}
	if serial != "" {
		if res.Revoked, err = a.st.RevokeCertificate(ctx, r); err != nil {
			return RevokeResult{}, fmt.Errorf("revoke certificate %s of cluster %q: %w", serial, cluster, err)
		}
	} else if res.Revoked, err = a.st.RevokeUser(ctx, r); err != nil {
		return RevokeResult{}, fmt.Errorf("revoke user %q of cluster %q: %w", req.User, cluster, err)
	}
	a.log.Warn("certificates revoked", "cluster", cluster, "by", p.User, "project", p.Project,
		"revoked_user", req.User, "serial", serial, "serials", len(res.Revoked), "reason", req.Reason)
	res.CRLNumber = a.refreshCRLs(ctx, c)
	return res, nil
}

// LiftUserRevocation lets user sign on cluster again (admin only); the
// user's revoked certificates stay revoked.
func (a *Authority) LiftUserRevocation(ctx context.Context, cluster, user string) error {
	p, c, err := a.lookup(ctx, cluster)
	if err != nil {
		return err
	}
	if err := p.AuthorizeWrite(c.Project); err != nil {
		return err
	}
	if !p.IsAdmin() {
		return forbidden(p, "lift a user revocation; that needs the admin role")
	}
	if err := a.st.LiftUserRevocation(ctx, cluster, user); err != nil {
		if errors.Is(err, api.ErrNotFound) {
			return api.New(http.StatusNotFound, api.CodeNotFound,
				fmt.Sprintf("user %q is not revoked on cluster %q", truncate(user, maxUserLen), cluster)).Wrap(err)
		}
		return fmt.Errorf("lift the revocation of a user on cluster %q: %w", cluster, err)
	}
	a.log.Info("user revocation lifted", "cluster", cluster, "by", p.User, "revoked_user", user)
	return nil
}

// Users lists who holds certificates on cluster, counted by requester, and
// the users revoked there.
func (a *Authority) Users(ctx context.Context, cluster string) (UserList, error) {
	if _, err := a.readable(ctx, cluster); err != nil {
		return UserList{}, err
	}
	now := a.now()
	counts, err := a.st.Users(ctx, cluster, now, MaxListedUsers+1)
	if err != nil {
		return UserList{}, fmt.Errorf("count the users of cluster %q: %w", cluster, err)
	}
	revs, err := a.st.UserRevocations(ctx, cluster, MaxListedUsers+1)
	if err != nil {
		return UserList{}, fmt.Errorf("read the revoked users of cluster %q: %w", cluster, err)
	}
	revoked := make(map[string]bool, len(revs))
	for _, r := range revs {
		revoked[r.User] = true
	}
	out := UserList{Cluster: cluster, Users: make([]UserEntry, 0, len(counts)+len(revs))}
	seen := make(map[string]bool, len(counts))
	for _, u := range counts {
		t := u.LastIssued.UTC()
		out.Users = append(out.Users, UserEntry{User: u.User, Project: u.Project, Valid: u.Valid, Revoked: u.Revoked,
			Expired: u.Expired, LastIssued: &t, UserRevoked: revoked[u.User]})
		seen[u.User] = true
	}
	// The listing of counts may be cut short: a revoked user past its end
	// is not known to hold nothing, so only those before it are added.
	last := ""
	if len(counts) > MaxListedUsers {
		last = counts[len(counts)-1].User
	}
	for _, r := range revs {
		if !seen[r.User] && (last == "" || r.User < last) {
			out.Users = append(out.Users, UserEntry{User: r.User, UserRevoked: true})
		}
	}
	slices.SortFunc(out.Users, func(x, y UserEntry) int {
		if c := strings.Compare(x.User, y.User); c != 0 {
			return c
		}
		return strings.Compare(x.Project, y.Project)
	})
	if len(out.Users) > MaxListedUsers || len(counts) > MaxListedUsers || len(revs) > MaxListedUsers {
		out.Users = out.Users[:min(len(out.Users), MaxListedUsers)]
		out.Truncated = true
	}
	return out, nil
}

// Certificate returns one registry entry with its certificate; for a
// superseded certificate, the newest certificate of its reissue chain.
func (a *Authority) Certificate(ctx context.Context, cluster, serial string) (CertificateDetail, error) {
	p, err := principal(ctx)
	if err != nil {
		return CertificateDetail{}, err
	}
	if err := ValidateClusterName(cluster); err != nil {
		return CertificateDetail{}, err
	}
	if serial, err = parseSerial(serial); err != nil {
		return CertificateDetail{}, err
	}
	c, err := a.cluster(ctx, cluster)
	if err != nil {
		return CertificateDetail{}, err
	}
	if err := p.AuthorizeRead(c.Project); err != nil {
		return CertificateDetail{}, err
	}
	ic, err := a.st.Certificate(ctx, cluster, serial)
	if errors.Is(err, api.ErrNotFound) {
		return CertificateDetail{}, api.New(http.StatusNotFound, api.CodeNotFound,
			fmt.Sprintf("cluster %q has no certificate %s", cluster, serial)).Wrap(err)
	}
	if err != nil {
		return CertificateDetail{}, fmt.Errorf("read certificate %s of cluster %q: %w", serial, cluster, err)
	}
	out := CertificateDetail{IssuedCertificate: entryOf(ic, a.now()), RevocationReason: ic.RevocationReason}
	newest := ic
	// Follow the chain of reissues to its newest certificate; it is short
	// (one link per reissue while the certificate stayed valid), and
	// bounded against a loop.
	for range 64 {
		if newest.SupersededBy == "" {
			break
		}
		next, err := a.st.Certificate(ctx, cluster, newest.SupersededBy)
		if err != nil {
			return CertificateDetail{}, fmt.Errorf("read certificate %s, which supersedes %s on cluster %q: %w",
				newest.SupersededBy, newest.Serial, cluster, err)
		}
		newest = next
	}
	if newest.Serial != ic.Serial {
		out.SupersededBy = newest.Serial
	}
	if newest.CertificateDER != nil {
		out.Certificate = certPEM(newest.CertificateDER)
	}
	return out, nil
}

// chain returns serial (none when "") and the serials of the certificates
// that reissues signed in its place, oldest first.
func (a *Authority) chain(ctx context.Context, cluster, serial string) ([]string, error) {
	var out []string
	for serial != "" && len(out) < 64 {
		ic, err := a.st.Certificate(ctx, cluster, serial)
		if err != nil {
			return nil, fmt.Errorf("read certificate %s of cluster %q: %w", serial, cluster, err)
		}
		out = append(out, serial)
		serial = ic.SupersededBy
	}
	return out, nil
}

func (a *Authority) handleUsers(w http.ResponseWriter, r *http.Request) error {
	res, err := a.Users(r.Context(), r.PathValue("cluster"))
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, res)
}

func (a *Authority) handleRevoke(w http.ResponseWriter, r *http.Request) error {
	var req RevokeRequest
	if err := api.DecodeJSON(r, &req, false); err != nil {
		return err
	}
	res, err := a.Revoke(r.Context(), r.PathValue("cluster"), req)
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, res)
}

func (a *Authority) handleLift(w http.ResponseWriter, r *http.Request) error {
	if err := a.LiftUserRevocation(r.Context(), r.PathValue("cluster"), r.PathValue("user")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *Authority) handleCertificate(w http.ResponseWriter, r *http.Request) error {
	res, err := a.Certificate(r.Context(), r.PathValue("cluster"), r.PathValue("serial"))
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, res)
}
