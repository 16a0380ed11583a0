package kmsplugin

import (
	"runtime"
	"runtime/debug"
)

// The Go runtime settings the shim runs with unless its environment sets
// GOMAXPROCS or GOGC (TuneRuntime).
const (
	// DefaultMaxProcs is the shim's GOMAXPROCS. A KMS call is a few µs of
	// work between two socket reads; with more than one P every call hands
	// its goroutines across threads, and an idle thread is woken (and spins)
	// several times per call. With one P the reader, the handler and the
	// writer run on one thread: about a third less CPU per call and a lower
	// p50 at one caller, and no fewer calls per second at eight on a 2-CPU
	// node. Blocking calls (PKCS#11 through cgo, the network) release the P,
	// so a slow custody does not stall the scheduler.
	DefaultMaxProcs = 1
	// DefaultGCPercent is the shim's GOGC. Its live heap is well under 1 MiB,
	// so with GOGC=100 a collection ran every ~4 MiB allocated (a few hundred
	// calls, ~12 % of its CPU under load); 400 collects a quarter as often
	// for a heap of at most ~16 MiB.
	DefaultGCPercent = 400
)

// TuneRuntime applies DefaultMaxProcs and DefaultGCPercent, each unless
// lookupEnv (os.LookupEnv) finds GOMAXPROCS or GOGC set, in which case the
// Go runtime has already applied that value. It returns the GOMAXPROCS and
// GC percent in force.
func TuneRuntime(lookupEnv func(string) (string, bool)) (procs, gcPercent int) {
	if _, ok := lookupEnv("GOMAXPROCS"); !ok {
		runtime.GOMAXPROCS(DefaultMaxProcs)
	}
	gcPercent = debug.SetGCPercent(DefaultGCPercent)
	if _, ok := lookupEnv("GOGC"); ok {
		debug.SetGCPercent(gcPercent) // put back what GOGC set
	} else {
		gcPercent = DefaultGCPercent
	}
	return runtime.GOMAXPROCS(0), gcPercent
}
