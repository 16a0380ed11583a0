package sqlite

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"fmt"
	"sync/atomic"
	"testing"
)

func verifyECDSA(pub crypto.PublicKey, digest, sig []byte) bool {
	k, ok := pub.(*ecdsa.PublicKey)
	return ok && ecdsa.VerifyASN1(k, digest, sig)
}

// BenchmarkRecordCertificate measures one registry insert (one BEGIN
// IMMEDIATE write transaction, WAL, synchronous=NORMAL).
func BenchmarkRecordCertificate(b *testing.B) {
	ctx := context.Background()
	d := openTest(b)
	createCluster(b, d, "c")
	n := 0
	for b.Loop() {
		n++
		if err := d.RecordCertificate(ctx, testCert("c", 1, n)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecordCertificateParallel measures inserts from many goroutines,
// which serialize on the write lock.
func BenchmarkRecordCertificateParallel(b *testing.B) {
	ctx := context.Background()
	d := openTest(b)
	createCluster(b, d, "c")
	var worker atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		w, n := worker.Add(1), 0
		for pb.Next() {
			n++
			ic := testCert("c", 1, n)
			ic.Serial = fmt.Sprintf("%08x%024x", w, n)
			if err := d.RecordCertificate(ctx, ic); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkClusterAndGenerations measures the reads of a CA show or a sign:
// the cluster, then its generations (here 5, after 4 rekeys).
func BenchmarkClusterAndGenerations(b *testing.B) {
	ctx := context.Background()
	d := openTest(b)
	createCluster(b, d, "c")
	for g := 1; g < 5; g++ {
		if err := d.Rekey(ctx, "c", g, testGeneration("c", g+1), t0, t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		c, err := d.Cluster(ctx, "c")
		if err != nil {
			b.Fatal(err)
		}
		gens, err := d.Generations(ctx, c.Name)
		if err != nil || len(gens) != 5 {
			b.Fatal(len(gens), err)
		}
	}
}
