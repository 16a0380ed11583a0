package bench

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2"
	kmsservice "k8s.io/kms/pkg/service"

	"github.com/clusterkeys/clusterkeys/test/kmspeer"
)

// envKMSPeer, when set in the environment of this test binary, makes it
// serve the minimal KMS v2 plugin (kmspeer) on the socket it names instead
// of running tests, so that the peer runs in its own process like the shim.
const envKMSPeer = "CLUSTERKEYS_BENCH_KMSPEER_SOCKET"

// kmsCallers are the numbers of concurrent callers of the KMS comparison.
var kmsCallers = []int{1, 8}

// serveKMSPeer serves kmspeer with an in-memory AES-256-GCM key on sock
// until SIGINT or SIGTERM; it is the peer process of TestVersusKMSPlugin.
func serveKMSPeer(sock string) int {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		fmt.Fprintln(os.Stderr, "kms peer:", err)
		return 1
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kms peer:", err)
		return 1
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kms peer:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := kmspeer.Serve(sock, kmspeer.New("bench-peer-1", aead))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kms peer:", err)
		return 1
	}
	<-ctx.Done()
	srv.Close()
	return 0
}

// startKMSShim starts the kmsshim binary bin as deployed with software
// custody and SQLite in a fresh state directory, on the socket name.sock in
// sockDir.
func startKMSShim(t *testing.T, bin, sockDir, name string) (*server, string) {
	t.Helper()
	sock := filepath.Join(sockDir, name+".sock")
	state := t.TempDir()
	cmd := exec.Command(bin, "--listen", "unix://"+sock, "--key", "kubernetes-kms", "--keys", "software", "--state-dir", state)
	s := &server{}
	start(t, s, cmd, state, socketReady(sock))
	return s, sock
}

// startKMSPeer starts this test binary again as the minimal plugin.
func startKMSPeer(t *testing.T, sockDir string) (*server, string) {
	t.Helper()
	sock := filepath.Join(sockDir, "peer.sock")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envKMSPeer+"="+sock)
	s := &server{}
	start(t, s, cmd, sockDir, socketReady(sock))
	return s, sock
}

// kmsTarget is one KMS v2 operation on one plugin, through kube-apiserver's
// own gRPC client (one connection shared by every caller, as
// kube-apiserver has).
type kmsTarget struct {
	srv  *server
	call func() error
}

// kmsTargets returns the Encrypt and Decrypt targets of the plugin on sock.
// The first call of each is checked before any timing.
func kmsTargets(t *testing.T, srv *server, sock string) (enc, dec kmsTarget) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := kmsv2.NewGRPCService(ctx, "unix://"+sock, "bench", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Status(ctx); err != nil || st.Healthz != "ok" {
		t.Fatalf("status of %s: %+v, %v", sock, st, err)
	}
	r, err := c.Encrypt(ctx, "bench", seed)
	if err != nil {
		t.Fatalf("encrypt through %s: %v", sock, err)
	}
	req := &kmsservice.DecryptRequest{Ciphertext: r.Ciphertext, KeyID: r.KeyID, Annotations: r.Annotations}
	pt, err := c.Decrypt(ctx, "bench", req)
	if err != nil || !bytes.Equal(pt, seed) {
		t.Fatalf("decrypt through %s: %d bytes, %v", sock, len(pt), err)
	}
	enc = kmsTarget{srv: srv, call: func() error { _, err := c.Encrypt(ctx, "bench", seed); return err }}
	dec = kmsTarget{srv: srv, call: func() error {
		pt, err := c.Decrypt(ctx, "bench", req)
		if err == nil && !bytes.Equal(pt, seed) {
			err = fmt.Errorf("decrypt returned other bytes")
		}
		return err
	}}
	return enc, dec
}

// envKMSShimBefore, when set, names another kmsshim binary (an earlier
// build) that TestVersusKMSPlugin runs beside the built one, in the same
// rounds, and compares in a table of its own.
const envKMSShimBefore = "CLUSTERKEYS_KMS_SHIM_BEFORE"

// kmsWarmup is how long each plugin is driven, untimed, before the first
// round of each operation and caller count, so that the first plugin of a
// round does not pay for what changed since the previous configuration.
const kmsWarmup = 500 * time.Millisecond

// TestVersusKMSPlugin is the KMS side-by-side of issue 13: the built
// kmsshim (software custody, SQLite) against the minimal AES-GCM plugin,
// each in its own process on a unix socket, Encrypt and Decrypt at 1 and 8
// callers in rounds whose order rotates, so that each plugin goes first
// equally often over a multiple of the number of plugins.
// CLUSTERKEYS_KMS_SHIM_BEFORE adds an earlier kmsshim build to the rounds.
func TestVersusKMSPlugin(t *testing.T) {
	set := readSettings(t)
	bin := os.Getenv("CLUSTERKEYS_BIN")
	if bin == "" {
		t.Fatal("CLUSTERKEYS_BIN must name the directory holding the built kmsshim (make build)")
	}
	load := loadAverage()
	sockDir, err := os.MkdirTemp("", "ckbench") // t.TempDir paths can exceed sun_path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	shim, shimSock := startKMSShim(t, filepath.Join(bin, "kmsshim"), sockDir, "shim")
	peer, peerSock := startKMSPeer(t, sockDir)
	shimEnc, shimDec := kmsTargets(t, shim, shimSock)
	peerEnc, peerDec := kmsTargets(t, peer, peerSock)
	var beforeEnc, beforeDec kmsTarget
	before := os.Getenv(envKMSShimBefore)
	if before != "" {
		b, sock := startKMSShim(t, before, sockDir, "before")
		beforeEnc, beforeDec = kmsTargets(t, b, sock)
	}

	var pairs, vsBefore []pairResult
	for _, p := range []struct {
		op                 string
		shim, peer, before kmsTarget
	}{{"Encrypt", shimEnc, peerEnc, beforeEnc}, {"Decrypt", shimDec, peerDec, beforeDec}} {
		for _, c := range kmsCallers {
			pr := pairResult{op: p.op, clients: c}
			var old sample
			runs := []func(time.Duration, bool){
				func(d time.Duration, timed bool) { keep(&pr.ck, timed, closedLoop(p.shim.srv, c, d, p.shim.call)) },
				func(d time.Duration, timed bool) { keep(&pr.cf, timed, closedLoop(p.peer.srv, c, d, p.peer.call)) },
			}
			if before != "" {
				runs = append(runs, func(d time.Duration, timed bool) { keep(&old, timed, closedLoop(p.before.srv, c, d, p.before.call)) })
			}
			for _, run := range runs {
				run(min(kmsWarmup, set.round), false)
			}
			for round := range set.rounds {
				for i := range runs {
					runs[(round+i)%len(runs)](set.round, true)
				}
			}
			t.Logf("%-8s %d callers: shim %s | plugin %s | ratio %.2f, p50 %+.0f µs",
				p.op, c, pr.ck.summary(), pr.cf.summary(), pr.ratio(), p50Delta(pr))
			pairs = append(pairs, pr)
			if before != "" {
				vb := pairResult{op: p.op, clients: c, ck: pr.ck, cf: old}
				t.Logf("%-8s %d callers: shim %s | shim before %s | ratio %.2f, p50 %+.0f µs",
					p.op, c, vb.ck.summary(), vb.cf.summary(), vb.ratio(), p50Delta(vb))
				vsBefore = append(vsBefore, vb)
			}
		}
	}
	addSection("kms", kmsMarkdown(pairs, set, load))
	if before != "" {
		fmt.Println(kmsBeforeMarkdown(vsBefore, before))
	}
	for _, pr := range append(pairs, vsBefore...) {
		if pr.ck.errors > 0 || pr.cf.errors > 0 {
			t.Errorf("%s at %d callers: %d and %d calls failed", pr.op, pr.clients, pr.ck.errors, pr.cf.errors)
		}
	}
}

// keep adds o to s when the run was timed.
func keep(s *sample, timed bool, o sample) {
	if timed {
		s.add(o)
	}
}

// kmsBeforeMarkdown is the table of the built shim beside an earlier build
// (printed, not written to BENCHMARKS.md).
func kmsBeforeMarkdown(pairs []pairResult, before string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## KMS v2: the shim beside an earlier build (%s)\n\n", before)
	b.WriteString("| operation | callers | shim calls/s | p50 | p99 | CPU/call | before calls/s | p50 | p99 | CPU/call | ratio (calls/s) | p50 shim − before |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	writePairRows(&b, pairs, us, func(p pairResult) string { return fmt.Sprintf("%+.0f µs", p50Delta(p)) })
	return b.String()
}

// p50Delta is the shim's p50 minus the plugin's, in µs.
func p50Delta(p pairResult) float64 {
	return float64(p.ck.pct(.5)-p.cf.pct(.5)) / float64(time.Microsecond)
}

func us(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }

func kmsMarkdown(pairs []pairResult, set settings, load string) string {
	var b strings.Builder
	b.WriteString("## KMS v2: the shim beside the minimal plugin\n\n")
	b.WriteString("The shim is the built `kmsshim` as deployed (software custody, SQLite store, its defaults);\n")
	b.WriteString("the plugin is the minimal KMS v2 plugin of test/kmspeer (the approach of the Kubernetes mock\n")
	b.WriteString("plugin: one gRPC call and one in-memory AES-256-GCM operation, a fixed key_id, nothing\n")
	b.WriteString("stored). Each runs in its own process on a unix socket and is driven by kube-apiserver's own\n")
	b.WriteString("KMS v2 gRPC client (one connection shared by the callers, as in kube-apiserver), closed loop,\n")
	b.WriteString("a 32-byte seed, rounds whose order alternates between the two, after an untimed warm-up of each.\n\n")
	b.WriteString(machineLines(load))
	fmt.Fprintf(&b, "- rounds: %d × %s per plugin, operation and caller count\n\n", set.rounds, set.round)
	b.WriteString("| operation | callers | shim calls/s | p50 | p99 | CPU/call | plugin calls/s | p50 | p99 | CPU/call | ratio (calls/s) | p50 shim − plugin |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	writePairRows(&b, pairs, us, func(p pairResult) string { return fmt.Sprintf("%+.0f µs", p50Delta(p)) })
	b.WriteString("\nGoals (issue 13): calls/s ≥ 0.9 × the plugin's at 8 callers; p50 at 1 caller within 20 µs of it.\n")
	b.WriteString("CPU/call is the plugin process's user + system CPU time (from /proc) per answered call.\n")
	return b.String()
}
