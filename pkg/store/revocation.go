package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
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
	// again (SplitCandidates): a candidate that is no longer one (revoked
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

// SplitCandidates compares current, the serials of the certificates to
// re-issue that a store reads inside a Reissue transaction, with
// r.Candidates: it returns the certificates of r.Certificates whose
// candidate is still one (keep), and the current candidates the caller had
// not read (added, sorted), which the ResignFunc signs.
func SplitCandidates(r Reissue, current []string) (keep []IssuedCertificate, added []string) {
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

// CheckResigned refuses re-issues that a ResignFunc returned for added
// unless each belongs to generation gen, has a serial and an issue time,
// and replaces a distinct certificate of added.
func CheckResigned(resigned []IssuedCertificate, added []string, gen int) error {
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
