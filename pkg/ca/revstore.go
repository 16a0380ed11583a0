package ca

import (
	"context"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// RevocationStore is the part of the metadata store that per-user
// revocation, CRLs and reissue use (issue 12). Every store implements it;
// the conformance suite (pkg/store/storetest) checks each method.
type RevocationStore interface {
	// Certificate returns one registry entry with its DER, revocation
	// reason and successor (api.ErrNotFound when absent).
	Certificate(ctx context.Context, cluster, serial string) (store.IssuedCertificate, error)
	// RevokeCertificate revokes r.Serial explicitly, with the certificates
	// a reissue signed in its place (a certificate already revoked
	// explicitly is left as it is), and returns their serials.
	RevokeCertificate(ctx context.Context, r store.Revocation) ([]string, error)
	// RevokeUser records r.User as revoked on the cluster and revokes every
	// certificate the user requested there that is still trusted, in one
	// transaction that RecordCertificate cannot interleave with: a
	// certificate of the user is either revoked or refused
	// (api.ErrUserRevoked). It returns the serials revoked.
	RevokeUser(ctx context.Context, r store.Revocation) ([]string, error)
	// LiftUserRevocation lets user sign again (api.ErrNotFound when not
	// revoked).
	LiftUserRevocation(ctx context.Context, cluster, user string) error
	// UserRevocations returns the users revoked on cluster, by name, at
	// most limit.
	UserRevocations(ctx context.Context, cluster string, limit int) ([]store.UserRevocation, error)
	// Users counts the certificates of cluster by requester and status at
	// now, sorted by user then project, at most limit rows.
	Users(ctx context.Context, cluster string, now time.Time, limit int) ([]store.UserCount, error)
	// CRLEntries returns the certificates of generation gen revoked
	// explicitly and not expired at now, by serial.
	CRLEntries(ctx context.Context, cluster string, gen int, now time.Time) ([]store.IssuedCertificate, error)
	// CRL returns the cached CRL of a generation (DER nil when none) and
	// the cluster's current revocation revision.
	CRL(ctx context.Context, cluster string, gen int) (store.CRL, int64, error)
	// NextCRLNumber allocates the cluster's next CRL number.
	NextCRLNumber(ctx context.Context, cluster string) (int64, error)
	// PutCRL caches a CRL unless a higher-numbered one is stored.
	PutCRL(ctx context.Context, c store.CRL) error
	// ReissueCandidates returns the certificates a reissue at now signs
	// again, with their DER, by serial.
	ReissueCandidates(ctx context.Context, cluster string, now time.Time) ([]store.IssuedCertificate, error)
	// Reissue writes a revocation, a rekey and the re-issued certificates
	// in one transaction, with those recorded since r.Candidates were read
	// signed by resign inside it (see store.Reissue.Candidates), and
	// returns the serials revoked and the re-issues written.
	Reissue(ctx context.Context, r store.Reissue, resign store.ResignFunc) (store.ReissueResult, error)
}
