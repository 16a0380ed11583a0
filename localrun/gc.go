package main

import (
	"runtime/debug"
)

// serveGCPercent is the garbage collector's GOGC for `localrun serve`
// when the environment sets none.
//
// A sign allocates about 30 KB (x509 and ASN.1 encoding, HTTP, JSON) and
// keeps almost nothing: under load the live heap stays near 2 MB, so with
// Go's default (GOGC=100, and its 4 MB minimum heap) the collector runs
// some 15 times a second at 1,000 signs/s, a few percent of the CPU. At
// 400 the heap may grow to five times the live heap before a collection,
// with a 16 MB minimum: about 16 MB under sign load, and never more than
// five times whatever the bounded caches hold. A GOGC in the environment
// (GOGC=100 restores Go's default) wins, as does GOMEMLIMIT for a limit.
const serveGCPercent = 400

// tuneGC sets the collector's percent to serveGCPercent unless the
// environment (lookupEnv) names a GOGC, and reports the percent in force.
func tuneGC(lookupEnv func(string) (string, bool)) int {
	if _, ok := lookupEnv("GOGC"); ok {
		old := debug.SetGCPercent(-1)
		debug.SetGCPercent(old)
		return old
	}
	debug.SetGCPercent(serveGCPercent)
	return serveGCPercent
}
