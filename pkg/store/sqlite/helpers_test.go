package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// t0 is a fixed instant with nanoseconds, in a zone other than UTC, so that
// the tests see both the precision and the UTC conversion.
var t0 = time.Date(2026, 11, 25, 7, 30, 15, 123456789, time.FixedZone("CET", 3600))

// openTest opens a fresh store in t's temporary directory, closed at cleanup.
func openTest(t testing.TB) *DB {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "clusterkeys.db"))
}

// openAt opens the store at path, closed at cleanup.
func openAt(t testing.TB, path string) *DB {
	t.Helper()
	d, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

func testCluster(name string) store.Cluster {
	return store.Cluster{
		Name: name, Project: "proj-" + name, Generation: 1,
		KeyAlgorithm: "ecdsa-p256", CommonName: name + " CA", ValidityDays: 3650,
		CreatedAt: t0,
	}
}

func testGeneration(cluster string, gen int) store.CAGeneration {
	created := t0.Add(time.Duration(gen) * time.Hour)
	return store.CAGeneration{
		Cluster: cluster, Generation: gen,
		KeyRef:         fmt.Sprintf("ca/%s/%d", cluster, gen),
		CertificateDER: []byte(fmt.Sprintf("der of %s generation %d", cluster, gen)),
		KeyAlgorithm:   "ecdsa-p256",
		NotBefore:      created.Add(-time.Minute),
		NotAfter:       created.AddDate(10, 0, 0),
		CreatedAt:      created,
	}
}

func testCert(cluster string, gen, n int) store.IssuedCertificate {
	issued := t0.Add(time.Duration(n) * time.Minute)
	return store.IssuedCertificate{
		Cluster: cluster, Serial: fmt.Sprintf("%032x", n), Generation: gen,
		Subject: fmt.Sprintf("CN=user%d,O=dev", n), Profile: "client",
		User: "alice", Project: "proj-" + cluster,
		NotBefore: issued.Add(-time.Minute), NotAfter: issued.Add(24 * time.Hour), IssuedAt: issued,
	}
}

func testKEKVersion(name string, v int) store.KEKVersion {
	return store.KEKVersion{
		Name: name, Version: v,
		KeyRef:    fmt.Sprintf("kek/%s/%d", name, v),
		KeyID:     fmt.Sprintf("ck1:%s:%d", name, v),
		CreatedAt: t0.Add(time.Duration(v) * time.Hour),
	}
}

// createCluster stores testCluster(name) with its first generation.
func createCluster(t testing.TB, d *DB, name string) {
	t.Helper()
	if err := d.CreateCluster(context.Background(), testCluster(name), testGeneration(name, 1)); err != nil {
		t.Fatalf("CreateCluster(%s): %v", name, err)
	}
}

// utc returns t in UTC without a monotonic reading, as the store returns it.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// all is the query of the first 1000 registry entries of cluster.
func all(cluster string) store.CertificateQuery {
	return store.CertificateQuery{Cluster: cluster, Limit: 1000}
}
