// Package bench measures clusterkeys side by side with its peers on this
// machine, each pair in alternating rounds of the same run, and writes
// BENCHMARKS.md, one section per comparison:
//
//   - TestVersusCfssl: sign-CSR and validate through localrun beside cfssl
//     v1.6.5 (same closed-loop load generator, P-256 CSRs, chain);
//   - TestVersusKMSPlugin: the built kmsshim beside the minimal KMS v2
//     plugin of test/kmspeer, through kube-apiserver's client;
//   - TestColdStart: each Lambda bootstrap (make lambda) beside a
//     hello-world aws-lambda-go bootstrap, exec to first reply;
//   - TestRegistryGrowth: sign and audit-page p50 as the registry grows.
//
// It runs only when CLUSTERKEYS_PEER_BENCH=1 (make bench sets it), so that
// `go test ./...` in test/ stays fast:
//
//	make build lambda && bash test/bench/cfssl.sh
//	cd test && CLUSTERKEYS_BIN=$PWD/../bin CLUSTERKEYS_PEER_BENCH=1 \
//	  CLUSTERKEYS_BENCHMARKS_MD=$PWD/../BENCHMARKS.md \
//	  go test -count=1 -timeout 60m -run 'TestVersusKMSPlugin' -v ./bench/
//
// A run of some comparisons rewrites their sections of BENCHMARKS.md and
// keeps the others. Other settings (environment): CLUSTERKEYS_PEER_ROUNDS
// (rounds per pair and client count, default 3), CLUSTERKEYS_PEER_ROUND_SECONDS
// (length of one round, default 3), CLUSTERKEYS_PEER_CLIENTS (cfssl
// comparison, default "1,8,32"), CLUSTERKEYS_BENCHMARKS_MD (where to write;
// default nowhere), CLUSTERKEYS_PEER_PROFILE_DIR (CPU and allocation profiles
// of localrun under the load of CLUSTERKEYS_PEER_PROFILE_CLIENTS clients,
// default 8, of CLUSTERKEYS_PEER_PROFILE_OP, "sign"
// (default), "validate" (one bundle again and again) or "validate-fresh"
// (a new leaf in each request)), CLUSTERKEYS_PEER_OPS (the cfssl pairs run,
// "sign,validate" by default), CLUSTERKEYS_PEER_FRESH_LEAVES (how many
// never-sent leaves the "new leaves" validate pair has, default 90000),
// CLUSTERKEYS_COLDSTART_BASELINE
// (a bin directory of older bootstraps measured in the same alternation),
// CLUSTERKEYS_GROWTH_SIZES (default "10000,100000,1000000") and
// CLUSTERKEYS_GROWTH_GENERATIONS (default 1000).
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
