// Package store defines the records clusterkeys keeps in its metadata store:
// clusters and their CA generations, the registry of issued certificates,
// key-encryption keys and their versions, and the wrapped key blobs of
// software custody. Implementations live in subpackages (sqlite, and later
// postgres); the functions define the small interfaces they need, in terms
// of these records.
//
// Errors: a missing object wraps api.ErrNotFound, an object that already
// exists wraps api.ErrConflict, a lost compare-and-swap wraps
// api.ErrGenerationMismatch, an unreachable database wraps api.ErrUnavailable.
package store

import (
	"errors"
	"time"
)

// Cluster is a cluster and the parameters its CA was created with.
type Cluster struct {
	Name    string
	Project string
	// Generation is the active CA generation, starting at 1.
	Generation   int
	KeyAlgorithm string
	CommonName   string
	ValidityDays int
	CreatedAt    time.Time
	// Policy is what an admin set for the certificates the cluster's CA
	// signs (SetPolicy); the zero value sets nothing. CreateCluster ignores
	// it: a new cluster has none.
	Policy ClusterPolicy
}

// CAGeneration is one CA key pair and certificate of a cluster.
type CAGeneration struct {
	Cluster    string
	Generation int
	// KeyRef names the private key in key custody.
	KeyRef         string
	CertificateDER []byte
	KeyAlgorithm   string
	NotBefore      time.Time
	NotAfter       time.Time
	CreatedAt      time.Time
	// RetiredAt is when a rekey replaced this generation; zero while active.
	RetiredAt time.Time
	// TrustedUntil is when a retired generation leaves the trust bundle;
	// equal to RetiredAt with a zero grace period. Zero while active.
	TrustedUntil time.Time
}

// IssuedCertificate is the registry entry of one certificate a CA signed.
type IssuedCertificate struct {
	Cluster    string
	Serial     string // lowercase hex, no separators
	Generation int
	Subject    string
	Profile    string
	User       string // requester
	Project    string // requester's project
	NotBefore  time.Time
	NotAfter   time.Time
	IssuedAt   time.Time
	// RevokedAt is when the certificate stopped being trusted (its CA left
	// the trust bundle); zero while it is trusted.
	RevokedAt time.Time
	// Privileged marks a subject Kubernetes treats as powerful (a CN or O
	// beginning "system:", O=kubeadm:cluster-admins), which only an admin
	// may obtain.
	Privileged bool
	// CertificateDER is the certificate itself; nil for entries recorded
	// before the registry kept it (migration 0005).
	CertificateDER []byte
	// RevocationReason is the reason of an explicit revocation (one of
	// Reasons); "" when the certificate was not revoked explicitly.
	RevocationReason string
	// SupersededBy is the serial of the certificate that a reissue signed
	// in its place; "" when none.
	SupersededBy string
	// Supersedes is, for a certificate a reissue signs (Reissue), the
	// serial of the one it replaces. It is not stored on the new entry.
	Supersedes string
	// RequireActive makes RecordCertificate refuse the certificate, and
	// record nothing, with an error wrapping api.ErrGenerationMismatch
	// when Generation is no longer the cluster's active generation at the
	// moment it records (a rekey committed first). A sign sets it: the
	// check is part of the recording write, so a certificate is either
	// refused or recorded before any later rekey, which then revokes it
	// with its generation. It is not stored.
	RequireActive bool
	// RequirePolicy, when not nil, makes RecordCertificate refuse the
	// certificate, and record nothing, with an error wrapping
	// ErrPolicyChanged when the cluster's policy is no longer
	// *RequirePolicy at the moment it records (another instance set a new
	// one). A sign that used a cached reading of the cluster sets it, so
	// that the certificate is recorded only if the policy it was signed
	// under is still the cluster's. It is not stored.
	RequirePolicy *ClusterPolicy
}

// ErrPolicyChanged is the refusal of a RecordCertificate whose
// RequirePolicy is no longer the cluster's policy.
var ErrPolicyChanged = errors.New("the cluster's policy changed")

// KEK is a named key-encryption key and its active version.
type KEK struct {
	Name          string
	Project       string
	ActiveVersion int
	CreatedAt     time.Time
}

// KEKVersion is one version of a KEK.
type KEKVersion struct {
	Name    string
	Version int
	// KeyRef names the key in custody.
	KeyRef string
	// KeyID is a public identifier of this version (a hash, never secret
	// material), e.g. the KMS v2 key_id.
	KeyID     string
	CreatedAt time.Time
}

// Certificate statuses, as the registry listing computes them at a given
// instant: revoked once RevokedAt has passed, else expired once NotAfter
// has passed, else valid.
const (
	StatusValid   = "valid"
	StatusRevoked = "revoked"
	StatusExpired = "expired"
)

// CertificateQuery selects one page of a cluster's issued-certificate
// registry, newest first: by IssuedAt descending, then by Serial
// descending. Every filter left at its zero value matches every entry.
type CertificateQuery struct {
	Cluster string
	// User matches the requester exactly.
	User string
	// Serial matches the serial exactly (lowercase hex, no separators).
	Serial string
	// Generation matches the CA generation that signed.
	Generation int
	// Status is StatusValid, StatusRevoked or StatusExpired at Now.
	Status string
	// Now is the instant Status is judged at.
	Now time.Time
	// After, when set, starts the page right after this position (keyset
	// paging): entries recorded later never shift the pages that follow.
	After *CertificateKey
	// Limit is the most entries returned; it must be positive.
	Limit int
}

// CertificateKey is the position of one registry entry in the listing
// order.
type CertificateKey struct {
	IssuedAt time.Time
	Serial   string
}
