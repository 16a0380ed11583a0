package store

import (
	"errors"
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
// the certificates to re-issue are no longer the ones the caller signed
// again: a certificate was recorded, revoked or expired meanwhile. Nothing
// was written; the caller may read them again and retry.
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
	// and unrevoked at Now, not superseded, of a trusted generation. If
	// the set differs inside the transaction, nothing is written and the
	// error wraps ErrCandidatesChanged.
	Candidates []string
	// Certificates are the re-issued certificates (Generation Next), each
	// naming the candidate it replaces in Supersedes. Candidates without
	// a stored DER have none.
	Certificates []IssuedCertificate
}
