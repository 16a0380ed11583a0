// Package storetest is the conformance suite of the metadata store
// contract (package store): every store implementation proves itself by
// calling Run from its own tests, so SQLite, PostgreSQL and any later store
// pass the same cases instead of keeping their own copies.
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t testing.TB) (storetest.Store, func() storetest.Store) { … })
//	}
//
// The cases cover clusters and CA generations, the rekey compare-and-swap
// (including concurrent rekeys from several handles, of which exactly one
// wins), the issued-certificate registry, KEKs and their versions with the
// rotation compare-and-swap, the blob store of software custody, what the
// custody reconciler reads and writes (key refs, blob listings, leases,
// first-seen times), and the errors the contract names: api.ErrNotFound,
// api.ErrConflict, api.ErrGenerationMismatch, and api.ErrUnavailable after
// Close.
//
// Times are compared to the microsecond: a store may keep more precision
// (SQLite keeps nanoseconds), never less.
package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/ca"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/reconcile"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// Store is what a metadata store implements: every store interface the
// functions define, plus readiness and Close.
type Store interface {
	ca.Store
	keywrap.Store
	keys.Blobs
	reconcile.Store
	// KEKVersionByKeyID returns the version whose KeyID is keyID
	// (api.ErrNotFound when absent).
	KEKVersionByKeyID(ctx context.Context, keyID string) (store.KEKVersion, error)
	// MarkExpired marks lapsed the never-revoked certificates of cluster
	// expired at now and not marked yet, and returns how many it marked
	// (migration 0008; store.LapseBacklog).
	MarkExpired(ctx context.Context, cluster string, now time.Time) (int, error)
	// Ping reports whether the database answers (for /readyz).
	Ping(ctx context.Context) error
	// Close releases the store; calls after it fail with an error wrapping
	// api.ErrUnavailable, and a second Close is not an error.
	Close() error
}

// NewStore returns a new, empty store, and a function that opens another
// handle on the same database, as a second instance would. Every handle is
// closed at t's cleanup (Close is idempotent, so a case may close one
// earlier).
type NewStore func(t testing.TB) (s Store, another func() Store)

// Run runs every case of the store contract against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	t.Helper()
	cases := []struct {
		name string
		run  func(*testing.T, NewStore)
	}{
		{"Clusters", testClusterRoundTrip},
		{"ClusterErrors", testClusterErrors},
		{"Certificates", testCertificates},
		{"ConcurrentRecords", testConcurrentRecords},
		{"CertificatesPaging", testCertificatesPaging},
		{"CertificatesFilters", testCertificatesFilters},
		{"CertificatesQueryErrors", testCertificatesQueryErrors},
		{"ActiveCAAndTrustedGenerations", testActiveCAAndTrustedGenerations},
		{"Rekey", testRekey},
		{"RekeyErrors", testRekeyErrors},
		{"RekeyRace", testRekeyRace},
		{"RekeyRetryLoop", testRekeyRetryLoop},
		{"RecordRacingRekey", testRecordRacingRekey},
		{"ActiveRecordRacingRekey", testActiveRecordRacingRekey},
		{"Policy", testPolicy},
		{"RecordRequiringPolicy", testRecordRequiringPolicy},
		{"KEKs", testKEKRoundTrip},
		{"KEKErrors", testKEKErrors},
		{"RotateKEKRace", testRotateKEKRace},
		{"Blobs", testBlobs},
		{"SoftwareCustody", testSoftwareCustody},
		{"KeyRefs", testKeyRefs},
		{"ListBlobs", testListBlobs},
		{"Lease", testLease},
		{"FirstSeen", testFirstSeen},
		{"TimesOutOfRange", testTimesOutOfRange},
		{"Closed", testClosed},
	}
	cases = append(cases, revocationCases...)
	for _, c := range append(cases, lapseCases...) {
		t.Run(c.name, func(t *testing.T) { c.run(t, newStore) })
	}
}

// T0 is a fixed instant with microseconds, in a zone other than UTC, so
// that the cases see both the precision and the conversion to UTC.
var T0 = time.Date(2026, 11, 25, 7, 30, 15, 123456000, time.FixedZone("CET", 3600))

// Cluster returns a test cluster named name at generation 1.
func Cluster(name string) store.Cluster {
	return store.Cluster{
		Name: name, Project: "proj-" + name, Generation: 1,
		KeyAlgorithm: "ecdsa-p256", CommonName: name + " CA", ValidityDays: 3650,
		CreatedAt: T0,
	}
}

// Generation returns test CA generation gen of cluster.
func Generation(cluster string, gen int) store.CAGeneration {
	created := T0.Add(time.Duration(gen) * time.Hour)
	return store.CAGeneration{
		Cluster: cluster, Generation: gen,
		KeyRef:         fmt.Sprintf("ca/%s/%d", cluster, gen),
		CertificateDER: fmt.Appendf(nil, "der of %s generation %d", cluster, gen),
		KeyAlgorithm:   "ecdsa-p256",
		NotBefore:      created.Add(-time.Minute),
		NotAfter:       created.AddDate(10, 0, 0),
		CreatedAt:      created,
	}
}

// Cert returns the n-th test certificate of cluster, signed by generation gen.
func Cert(cluster string, gen, n int) store.IssuedCertificate {
	issued := T0.Add(time.Duration(n) * time.Minute)
	return store.IssuedCertificate{
		Cluster: cluster, Serial: fmt.Sprintf("%032x", n), Generation: gen,
		Subject: fmt.Sprintf("CN=user%d,O=dev", n), Profile: "client",
		User: "alice", Project: "proj-" + cluster,
		NotBefore: issued.Add(-time.Minute), NotAfter: issued.Add(24 * time.Hour), IssuedAt: issued,
	}
}

// KEK returns a test KEK named name at version 1.
func KEK(name string) store.KEK {
	return store.KEK{Name: name, Project: "proj", ActiveVersion: 1, CreatedAt: T0}
}

// KEKVersion returns test version v of the KEK name.
func KEKVersion(name string, v int) store.KEKVersion {
	return store.KEKVersion{
		Name: name, Version: v,
		KeyRef:    fmt.Sprintf("kek/%s/%d", name, v),
		KeyID:     fmt.Sprintf("ck1:%s:%d", name, v),
		CreatedAt: T0.Add(time.Duration(v) * time.Hour),
	}
}

// CreateCluster stores Cluster(name) with its first generation.
func CreateCluster(t testing.TB, s Store, name string) {
	t.Helper()
	if err := s.CreateCluster(context.Background(), Cluster(name), Generation(name, 1)); err != nil {
		t.Fatalf("CreateCluster(%s): %v", name, err)
	}
}

// All is the query of the first 1000 registry entries of cluster.
func All(cluster string) store.CertificateQuery {
	return store.CertificateQuery{Cluster: cluster, Limit: 1000}
}

// utc returns t in UTC without a monotonic reading, as a store returns it.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}
