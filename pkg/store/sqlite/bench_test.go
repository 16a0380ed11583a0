package sqlite

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/store/storetest"
)

// BenchmarkRecordCertificate records certificates from 8 concurrent callers
// (the bench's 8 signing clients) through the group commit, and reports
// how many certificates a transaction held on average.
func BenchmarkRecordCertificate(b *testing.B) {
	d := openTest(b)
	createCluster(b, d, "c")
	ctx := context.Background()
	var n atomic.Int64
	before := d.certs.transactions.Load()
	cpu0 := cpuTime()
	b.SetParallelism(8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := d.RecordCertificate(ctx, storetest.Cert("c", 1, int(n.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	if tx := d.certs.transactions.Load() - before; tx > 0 {
		b.ReportMetric(float64(n.Load())/float64(tx), "certs/tx")
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
