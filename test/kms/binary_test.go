package kms

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/testproc"
	"github.com/clusterkeys/clusterkeys/pkg/backends"
	_ "github.com/clusterkeys/clusterkeys/pkg/backends/all"
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// shimBinary returns $CLUSTERKEYS_BIN/kmsshim when present (make e2e builds
// it), else builds functions/kmsshim once for this test run.
func shimBinary(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("CLUSTERKEYS_BIN"); dir != "" {
		p := filepath.Join(dir, "kmsshim")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kmsshim-bin")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "kmsshim")
		cmd := exec.Command("go", "build", "-o", buildPath, "./functions/kmsshim")
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.Join(err, errors.New(string(out)))
		}
	})
	if buildErr != nil {
		t.Fatalf("build kmsshim: %v", buildErr)
	}
	return buildPath
}

// shimProcess is a running kmsshim binary.
type shimProcess struct {
	cmd  *exec.Cmd
	sock string
	log  *testproc.Output
	done chan error
}

func startBinary(t testing.TB, bin, stateDir, sock string) *shimProcess {
	t.Helper()
	// CLUSTERKEYS_STATUS_CACHE is read like any flag: a short cache makes
	// a rotation visible sooner.
	return startBinaryWith(t, bin, sock, []string{"--keys", "software", "--state-dir", stateDir}, []string{"CLUSTERKEYS_STATUS_CACHE=1s"})
}

// startBinaryWith starts kmsshim on sock with the KEK kubernetes-kms, extra
// args and extra environment, and waits for its socket.
func startBinaryWith(t testing.TB, bin, sock string, args, env []string) *shimProcess {
	t.Helper()
	var out testproc.Output
	cmd := exec.Command(bin, append([]string{"--listen", "unix://" + sock, "--key", "kubernetes-kms"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &shimProcess{cmd: cmd, sock: sock, log: &out, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if fi, err := os.Stat(sock); err == nil && fi.Mode().Type() == fs.ModeSocket {
			return p
		}
		select {
		case err := <-p.done:
			t.Fatalf("kmsshim exited (%v) before listening:\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kmsshim not listening after 20s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and returns the exit error.
func (p *shimProcess) stop(t testing.TB) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("kmsshim did not stop within 20s of SIGTERM")
		return nil
	}
}

// TestBuiltShimBinary runs the real kmsshim binary with software custody and
// SQLite, drives it with kube-apiserver's client, rotates the KEK from
// another process sharing the state directory (as localrun serve would),
// and checks graceful SIGTERM and persistence across a restart.
func TestBuiltShimBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the kmsshim binary")
	}
	ctx := context.Background()
	bin := shimBinary(t)
	stateDir := t.TempDir()
	sock := filepath.Join(socketDir(t), "kms.sock")
	p := startBinary(t, bin, stateDir, sock)

	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v; want 0600", fi.Mode(), err)
	}
	c := kubeClient(t, sock)
	st, err := c.Status(ctx)
	if err != nil || st.Healthz != "ok" {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	w, _ := writeTransformer(t, c)
	stored, raw, pw, key := storeSecret(t, w, "bin")

	// Rotate through the shared state directory, as the gateway would.
	cfg := config.Default()
	cfg.StateDir = stateDir
	cfg, err = cfg.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	b, err := backends.Open(ctx, cfg, nil, nil)
	if err != nil {
		t.Fatalf("open the shim's state dir from a second process: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	kw := keywrap.New(b.Store, b.Custody, keywrap.Options{})
	v2, err := kw.Rotate(ctx, "kubernetes-kms", 0)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	rotatedAt := time.Now()
	newID := waitStatusKeyID(t, c, st.KeyID)
	t.Logf("the running shim reported the rotated key_id after %v", time.Since(rotatedAt).Round(time.Millisecond))
	if newID != v2.KeyID {
		t.Fatalf("status key_id after rotation %q, want %q", newID, v2.KeyID)
	}
	if got, stale, err := readTransformer(t, sock).TransformFromStorage(ctx, stored, key); err != nil || !stale || !bytes.Equal(got, raw) {
		t.Fatalf("old value after rotation: %d bytes, stale=%v, %v", len(got), stale, err)
	}

	if err := p.stop(t); err != nil {
		t.Fatalf("kmsshim exit after SIGTERM: %v\n%s", err, p.log.String())
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket left after SIGTERM: %v", err)
	}
	if strings.Contains(p.log.String(), pw) {
		t.Fatal("the shim's log contains the secret")
	}

	// A new process over the same state decrypts what the first one wrapped.
	startBinary(t, bin, stateDir, sock)
	got, _, err := readTransformer(t, sock).TransformFromStorage(ctx, stored, key)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("read back after restart: %d bytes, %v", len(got), err)
	}
}

// BenchmarkShimBinaryRoundTrip measures round trips through the built
// kmsshim binary with software custody and SQLite, as deployed.
func BenchmarkShimBinaryRoundTrip(b *testing.B) {
	bin := shimBinary(b)
	sock := filepath.Join(socketDir(b), "kms.sock")
	startBinaryWith(b, bin, sock, []string{"--keys", "software", "--state-dir", b.TempDir()}, nil)
	benchRoundTrips(b, sock)
}
