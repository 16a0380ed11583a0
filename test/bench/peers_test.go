// Package bench measures clusterkeys side by side with its peer, cfssl
// v1.6.5, on this machine: the same closed-loop load generator, the same
// P-256 CSRs and CA key type, the same chain, rounds alternating between the
// two servers. It writes BENCHMARKS.md.
//
// It runs only when CLUSTERKEYS_PEER_BENCH=1 (make bench sets it), so that
// `go test ./...` in test/ stays fast:
//
//	make build && bash test/bench/cfssl.sh
//	cd test && CLUSTERKEYS_BIN=$PWD/../bin CLUSTERKEYS_PEER_BENCH=1 \
//	  go test -count=1 -timeout 60m -run TestVersusCfssl -v ./bench/
//
// Other settings (environment): CLUSTERKEYS_PEER_ROUNDS (rounds per pair and
// client count, default 3), CLUSTERKEYS_PEER_ROUND_SECONDS (length of one
// round, default 3), CLUSTERKEYS_PEER_CLIENTS (default "1,8,32"),
// CLUSTERKEYS_BENCHMARKS_MD (where to write the table; default none),
// CLUSTERKEYS_PEER_PROFILE_DIR (when set, CPU and allocation profiles of
// localrun under the 8-client sign load are written there).
package bench

import (
	"fmt"
	"os"
	"testing"
)

// TestMain runs the comparison only when asked to: it starts servers and
// loads the machine for minutes.
func TestMain(m *testing.M) {
	if sock := os.Getenv(envKMSPeer); sock != "" {
		os.Exit(serveKMSPeer(sock))
	}
	if os.Getenv("CLUSTERKEYS_PEER_BENCH") != "1" {
		fmt.Println("bench: the side-by-side comparison with cfssl runs with CLUSTERKEYS_PEER_BENCH=1 (make bench)")
		os.Exit(0)
	}
	code := m.Run()
	if path := os.Getenv("CLUSTERKEYS_BENCHMARKS_MD"); path != "" {
		if err := writeReport(path); err != nil {
			fmt.Fprintln(os.Stderr, "bench: write", path+":", err)
			code = 1
		} else {
			fmt.Println("bench: wrote", path)
		}
	}
	os.Exit(code)
}
