package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// Revocation reasons: the RFC 5280 CRLReason names a revocation may give.
const (
	ReasonUnspecified          = "unspecified"
	ReasonKeyCompromise        = "keyCompromise"
	ReasonAffiliationChanged   = "affiliationChanged"
	ReasonSuperseded           = "superseded"
	ReasonCessationOfOperation = "cessationOfOperation"
)

// Reasons are the revocation reasons, in the order they are documented.
var Reasons = []string{ReasonKeyCompromise, ReasonAffiliationChanged, ReasonSuperseded, ReasonCessationOfOperation, ReasonUnspecified}

// ErrCandidatesChanged is wrapped (with api.ErrConflict) by Reissue when
// certificates to re-issue were recorded after the caller read them and
// the caller gave no ResignFunc, or its ResignFunc refused to sign them
// (too many to sign inside the transaction). Nothing was written; the
// caller may read them again and retry.
var ErrCandidatesChanged = errors.New("the certificates to re-issue changed")

// Revocation is an explicit revocation: of one certificate (Serial) or of
// every certificate a user requested on a cluster (User), exactly one of
// them.
type Revocation struct {
	Cluster string
	Serial  string
	User    string
	// Reason is one of Reasons.
	Reason string
	// By names who revoked (for the user revocation record).
	By string
	// At is when the revocation takes effect: the certificates' RevokedAt
	// (never later than a RevokedAt they already have).
	At time.Time
}

// UserRevocation is a user whose signs on a cluster are refused
// (api.ErrUserRevoked) until it is lifted.
type UserRevocation struct {
	Cluster   string
	User      string
	Reason    string
	RevokedBy string
	RevokedAt time.Time
}

// UserCount is what one requester (user and project) holds on a cluster,
// counted by status at a given instant (as the registry listing computes
// it).
type UserCount struct {
	User       string
	Project    string
	Valid      int
	Revoked    int
	Expired    int
	LastIssued time.Time
}

// CRL is the cached certificate revocation list of one CA generation.
type CRL struct {
	Cluster    string
	Generation int
	// Number is the CRL number; it increases across every CRL a cluster
	// issues, whatever the generation (NextCRLNumber).
	Number     int64
	ThisUpdate time.Time
	NextUpdate time.Time
	DER        []byte
	// Revision is the cluster's revocation revision the CRL was built
	// from: a revocation since then makes it stale.
	Revision int64
}

// Reissue is a revocation, a rekey and the re-issue of every other valid
// certificate under the new generation, written in one transaction.
type Reissue struct {
	Cluster string
	// Expected is the active generation; Next (Expected+1) replaces it as
	// Store.Rekey does, with Now and TrustedUntil.
	Expected     int
	Next         CAGeneration
	Now          time.Time
	TrustedUntil time.Time
	// Revocation is the revocation applied first (its At is Now).
	Revocation Revocation
	// Candidates are the serials of every certificate to re-issue, as the
	// caller read them (ReissueCandidates minus the revoked ones): valid
	// and unrevoked at Now, not superseded, of a trusted generation.
	// Inside the transaction, after the revocation and while no
	// certificate can be recorded on the cluster, the store reads them
	// again (ReissuedCertificates): a candidate that is no longer one (revoked
	// or expired meanwhile) is dropped with its re-issue, and the
	// certificates that became candidates since the caller read them
	// (recorded meanwhile) are signed by the ResignFunc and written with
	// the others.
	Candidates []string
	// Certificates are the re-issued certificates (Generation Next), each
	// naming the candidate it replaces in Supersedes. Candidates without
	// a stored DER have none.
	Certificates []IssuedCertificate
}

// ResignFunc signs again, under the new generation of a Reissue, the
// certificates recorded after the caller read the candidates. A store
// calls it inside the Reissue transaction, where no certificate can be
// recorded on the cluster (SQLite holds the write lock; PostgreSQL holds
// the lock on the cluster's CA generation rows that recording shares), so
// that the certificates it signs and those the caller signed before are
// every candidate at the commit. It returns the re-issues (Generation the
// new one, Supersedes naming a certificate of certs), possibly fewer than
// certs (a certificate without DER cannot be signed again); an error
// rolls the transaction back and is returned by Reissue (wrap
// ErrCandidatesChanged and api.ErrConflict to have the caller read the
// candidates again).
type ResignFunc func(ctx context.Context, certs []IssuedCertificate) ([]IssuedCertificate, error)

// ReissueResult is what a Reissue wrote.
type ReissueResult struct {
	// Revoked are the serials the revocation revoked, sorted.
	Revoked []string
	// Certificates are the re-issued certificates written: those of
	// Reissue.Certificates whose candidate still was one, then those the
	// ResignFunc signed.
	Certificates []IssuedCertificate
}

// splitCandidates compares current, the serials of the certificates to
// re-issue that a store reads inside a Reissue transaction, with
// r.Candidates: it returns the certificates of r.Certificates whose
// candidate is still one (keep), and the current candidates the caller had
// not read (added, sorted), which the ResignFunc signs.
func splitCandidates(r Reissue, current []string) (keep []IssuedCertificate, added []string) {
	now := make(map[string]bool, len(current))
	for _, s := range current {
		now[s] = true
	}
	keep = make([]IssuedCertificate, 0, len(r.Certificates))
	for _, c := range r.Certificates {
		if now[c.Supersedes] {
			keep = append(keep, c)
		}
	}
	read := make(map[string]bool, len(r.Candidates))
	for _, s := range r.Candidates {
		read[s] = true
	}
	for _, s := range current {
		if !read[s] {
			added = append(added, s)
		}
	}
	slices.Sort(added)
	return keep, added
}

// checkResigned refuses re-issues that a ResignFunc returned for added
// unless each belongs to generation gen, has a serial and an issue time,
// and replaces a distinct certificate of added.
func checkResigned(resigned []IssuedCertificate, added []string, gen int) error {
	seen := make(map[string]bool, len(resigned))
	for _, c := range resigned {
		if c.Generation != gen || c.Serial == "" || c.IssuedAt.IsZero() || !slices.Contains(added, c.Supersedes) || seen[c.Supersedes] {
			return fmt.Errorf("re-issued certificate %q: generation %d (want %d), or it replaces %q, not a certificate to sign or one already signed",
				c.Serial, c.Generation, gen, c.Supersedes)
		}
		seen[c.Supersedes] = true
	}
	return nil
}

// checkRevocation refuses a revocation that names neither or both of a
// serial and a user, or no cluster, reason or instant, or an instant
// CheckTimes refuses.
func checkRevocation(r Revocation) error {
	if r.Cluster == "" || (r.Serial == "") == (r.User == "") || r.Reason == "" || r.At.IsZero() {
		return errors.New("a revocation needs a cluster, exactly one of a serial and a user, a reason and an instant")
	}
	return CheckTimes(r.At)
}

// RevokeFunc applies a revocation in a write transaction of its own and
// returns the serials it revoked, sorted: a store's step behind
// RevokeCertificate and RevokeUser.
type RevokeFunc func(ctx context.Context, r Revocation) ([]string, error)

// RevokeCertificate is a store's RevokeCertificate around apply: it refuses
// a malformed revocation or one that names no serial, and gives apply's
// error its context.
func RevokeCertificate(ctx context.Context, r Revocation, apply RevokeFunc) ([]string, error) {
	return revoke(ctx, r, r.Serial, "a certificate", fmt.Sprintf("certificate %s", r.Serial), apply)
}

// RevokeUser is a store's RevokeUser around apply: it refuses a malformed
// revocation or one that names no user, and gives apply's error its
// context.
func RevokeUser(ctx context.Context, r Revocation, apply RevokeFunc) ([]string, error) {
	return revoke(ctx, r, r.User, "a user", fmt.Sprintf("user %q", r.User), apply)
}

// revoke checks r, which must name (a serial or a user, as kind says), and
// runs apply, with what r revokes in its error.
func revoke(ctx context.Context, r Revocation, name, kind, what string, apply RevokeFunc) ([]string, error) {
	if err := checkRevocation(r); err != nil || name == "" {
		return nil, fmt.Errorf("revoke %s of cluster %q: invalid revocation (%v)", kind, r.Cluster, err)
	}
	serials, err := apply(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("revoke %s of cluster %q: %w", what, r.Cluster, err)
	}
	return serials, nil
}

// CheckCRL checks a CRL a store's PutCRL is given: a cluster, a number of
// at least 1, a DER, and times CheckTimes accepts.
func CheckCRL(c CRL) error {
	if c.Cluster == "" || c.Number < 1 || len(c.DER) == 0 {
		return fmt.Errorf("store a CRL of cluster %q: a cluster, a number and a DER are required", c.Cluster)
	}
	if err := CheckTimes(c.ThisUpdate, c.NextUpdate); err != nil {
		return fmt.Errorf("store a CRL of cluster %q: %w", c.Cluster, err)
	}
	return nil
}

// CheckReissue refuses a malformed reissue: the next generation must
// follow the expected one (else an error wrapping
// api.ErrGenerationMismatch), the revocation must name the cluster, every
// certificate must replace a candidate and belong to the next generation,
// and every time must be one CheckTimes accepts.
func CheckReissue(r Reissue) error {
	if err := checkReissue(r); err != nil {
		return fmt.Errorf("reissue on cluster %q: %w", r.Cluster, err)
	}
	if err := CheckTimes(r.Now, r.TrustedUntil, r.Next.NotBefore, r.Next.NotAfter, r.Next.CreatedAt); err != nil {
		return fmt.Errorf("reissue on cluster %q: %w", r.Cluster, err)
	}
	if err := checkCertificateTimes(r.Certificates); err != nil {
		return fmt.Errorf("reissue on cluster %q: %w", r.Cluster, err)
	}
	return nil
}

// checkReissue is CheckReissue but for the times.
func checkReissue(r Reissue) error {
	if r.Next.KeyRef == "" || (r.Next.Cluster != "" && r.Next.Cluster != r.Cluster) || r.Now.IsZero() {
		return errors.New("the next generation needs a key ref and the cluster's name, and the reissue an instant")
	}
	if r.Next.Generation != r.Expected+1 {
		return fmt.Errorf("next generation %d does not follow expected %d: %w", r.Next.Generation, r.Expected, api.ErrGenerationMismatch)
	}
	if r.Revocation.Cluster != r.Cluster || r.Revocation.At.IsZero() || (r.Revocation.Serial == "") == (r.Revocation.User == "") {
		return errors.New("the revocation must name the cluster, an instant and exactly one of a serial and a user")
	}
	for _, c := range r.Certificates {
		if c.Generation != r.Next.Generation || c.Serial == "" || c.IssuedAt.IsZero() || !slices.Contains(r.Candidates, c.Supersedes) {
			return fmt.Errorf("re-issued certificate %q: generation %d, or it replaces %q, not a candidate", c.Serial, c.Generation, c.Supersedes)
		}
	}
	return nil
}

// checkCertificateTimes checks the instants of re-issued certificates.
func checkCertificateTimes(certs []IssuedCertificate) error {
	for _, c := range certs {
		if err := CheckTimes(c.NotBefore, c.NotAfter, c.IssuedAt, c.RevokedAt); err != nil {
			return err
		}
	}
	return nil
}

// ReissuedCertificates is the step of a store's Reissue once it has read,
// inside its transaction, current: the serials of the certificates to
// re-issue at r.Now. It returns the certificates to write: those of
// r.Certificates whose candidate still is one, then the re-issues that
// resign signs of the candidates recorded since the caller read them,
// which read returns (from the same transaction). Without resign, such
// candidates give an error wrapping ErrCandidatesChanged and
// api.ErrConflict; what resign returns must pass checkResigned and
// CheckTimes.
func ReissuedCertificates(ctx context.Context, r Reissue, current []string, read func(added []string) ([]IssuedCertificate, error), resign ResignFunc) ([]IssuedCertificate, error) {
	keep, added := splitCandidates(r, current)
	if len(added) == 0 {
		return keep, nil
	}
	if resign == nil {
		return nil, fmt.Errorf("%d certificates recorded since the candidates were read: %w: %w", len(added), ErrCandidatesChanged, api.ErrConflict)
	}
	certs, err := read(added)
	if err != nil {
		return nil, err
	}
	more, err := resign(ctx, certs)
	if err != nil {
		return nil, fmt.Errorf("re-sign %d certificates recorded meanwhile: %w", len(certs), err)
	}
	if err := checkResigned(more, added, r.Next.Generation); err != nil {
		return nil, err
	}
	if err := checkCertificateTimes(more); err != nil {
		return nil, err
	}
	return append(keep, more...), nil
}

// MaxChain bounds the reissue chain a revocation by serial follows.
const MaxChain = 64

// RevokeChain is the walk of a store's revocation by serial: a certificate
// a reissue replaced holds the same key as its successors, so revoking any
// of them revokes the whole chain. It goes back from serial to the first
// certificate of the chain with replaced (which returns the serial of the
// certificate a serial replaced, "" for none), then forward with revoke
// (which revokes a certificate unless it is already revoked explicitly and
// returns its successor, "" for none, and whether it revoked it), each at
// most MaxChain steps. It returns the serials of the chain, sorted, and
// whether any was revoked.
func RevokeChain(serial string, replaced func(serial string) (string, error), revoke func(serial string) (next string, revoked bool, err error)) ([]string, bool, error) {
	first := serial
	for range MaxChain {
		prev, err := replaced(first)
		if err != nil {
			return nil, false, err
		}
		if prev == "" {
			break
		}
		first = prev
	}
	var serials []string
	changed := false
	for serial := first; serial != "" && len(serials) < MaxChain; {
		next, revoked, err := revoke(serial)
		if err != nil {
			return nil, false, err
		}
		serials = append(serials, serial)
		changed = changed || revoked
		serial = next
	}
	slices.Sort(serials)
	return serials, changed, nil
}
