package storetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// Benchmark measures the writes of a sign and a rekey on stores made by
// newStore, so that stores can be compared on one machine in one run:
// RecordCertificate (one insert), the same from parallel goroutines, and
// Rekey (one compare-and-swap with its inserts and updates).
func Benchmark(b *testing.B, newStore NewStore) {
	b.Run("RecordCertificate", func(b *testing.B) {
		ctx := context.Background()
		d, _ := newStore(b)
		CreateCluster(b, d, "c")
		n := 0
		for b.Loop() {
			n++
			if err := d.RecordCertificate(ctx, Cert("c", 1, n)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("RecordCertificateParallel", func(b *testing.B) {
		ctx := context.Background()
		d, _ := newStore(b)
		CreateCluster(b, d, "c")
		var worker atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			w, n := worker.Add(1), 0
			for pb.Next() {
				n++
				ic := Cert("c", 1, n)
				ic.Serial = fmt.Sprintf("%08x%024x", w, n)
				if err := d.RecordCertificate(ctx, ic); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("Rekey", func(b *testing.B) {
		// A fresh cluster every 10 rekeys, so that the cost does not grow
		// with the number of generations one cluster has.
		ctx := context.Background()
		d, _ := newStore(b)
		i, gen, name := 0, 1, ""
		for b.Loop() {
			if i%10 == 0 {
				b.StopTimer()
				name, gen = fmt.Sprintf("c%d", i), 1
				CreateCluster(b, d, name)
				b.StartTimer()
			}
			i++
			if err := d.Rekey(ctx, name, gen, Generation(name, gen+1), T0, T0); err != nil {
				b.Fatal(err)
			}
			gen++
		}
	})
	b.Run("ClusterAndGenerations", func(b *testing.B) {
		ctx := context.Background()
		d, _ := newStore(b)
		CreateCluster(b, d, "c")
		for g := 1; g < 5; g++ {
			if err := d.Rekey(ctx, "c", g, Generation("c", g+1), T0, T0); err != nil {
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
	})
}
