package ca

import (
	"context"
	"crypto"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// Store is the part of the metadata store the CA functions use.
// pkg/store/sqlite implements it.
type Store interface {
	RevocationStore
	// CreateCluster stores a cluster and its first CA generation in one
	// transaction. It fails with an error wrapping api.ErrConflict when the
	// cluster already exists.
	CreateCluster(ctx context.Context, c store.Cluster, first store.CAGeneration) error
	// Cluster returns a cluster (api.ErrNotFound when absent).
	Cluster(ctx context.Context, name string) (store.Cluster, error)
	// ActiveCA returns a cluster and its active CA generation in one read
	// (api.ErrNotFound when the cluster is absent): all a sign needs.
	ActiveCA(ctx context.Context, cluster string) (store.Cluster, store.CAGeneration, error)
	// TrustedGenerations returns the active generation (number active) and
	// the retired ones whose TrustedUntil is after now, newest first: all
	// a CA show needs, however long the history.
	TrustedGenerations(ctx context.Context, cluster string, active int, now time.Time) ([]store.CAGeneration, error)
	// Generations returns every CA generation of a cluster, newest first.
	// Only a rekey's clean-up reads the whole history.
	Generations(ctx context.Context, cluster string) ([]store.CAGeneration, error)
	// Rekey atomically checks that the cluster's active generation is
	// expected (else api.ErrGenerationMismatch), inserts next (whose
	// Generation is expected+1), marks every older generation still trusted
	// as retired at now and trusted until trustedUntil (capped: never later
	// than a value it already has), marks the certificates they issued as
	// revoked at trustedUntil, and moves the pointer.
	Rekey(ctx context.Context, cluster string, expected int, next store.CAGeneration, now, trustedUntil time.Time) error
	// RecordCertificate adds an issued certificate to the registry.
	RecordCertificate(ctx context.Context, c store.IssuedCertificate) error
	// Certificates returns one page of a cluster's issued-certificate
	// registry as q selects it: newest first by (IssuedAt, Serial), after
	// q.After when set, at most q.Limit entries.
	Certificates(ctx context.Context, q store.CertificateQuery) ([]store.IssuedCertificate, error)
}

// Keys is the part of key custody the CA functions use: signing keys that
// never leave custody. Every keys.Custody (pkg/keys/software, pkcs11,
// barbican) satisfies it; pkg/backends checks that at compile time.
type Keys interface {
	// GenerateSigner creates a new key named ref. Refs are never reused.
	GenerateSigner(ctx context.Context, ref string, alg keys.Algorithm) (crypto.Signer, error)
	// Signer returns the key named ref (keys.ErrNotFound when absent).
	Signer(ctx context.Context, ref string) (crypto.Signer, error)
	// Destroy deletes the key named ref; deleting a missing key is not an error.
	Destroy(ctx context.Context, ref string) error
}
