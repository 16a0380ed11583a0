// Package testproc runs the programs tests drive (localrun, kmsshim, etcd,
// cfssl, kube-apiserver): it collects their output where the test can read
// it while they write, and stops them when the test ends. Both the main
// module's tests and the test module's (test/) use it.
package testproc

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Output is a bytes.Buffer safe for a process's stdout and stderr writes
// and the test's reads. The zero value is ready to use.
type Output struct {
	// Limit, when positive, bounds the memory held: a write that finds
	// more than Limit bytes drops them first (the logs of a long run are
	// only read on failure).
	Limit int

	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.Limit > 0 && o.b.Len() > o.Limit {
		o.b.Reset()
	}
	return o.b.Write(p)
}

// String returns everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// Tail returns the last n bytes written, preceded by "…" when there were
// more.
func (o *Output) Tail(n int) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := o.b.Bytes()
	if len(b) <= n {
		return string(b)
	}
	return "…" + string(b[len(b)-n:])
}

// Start starts cmd and waits for it in the background; the returned
// channel is closed when it has exited. When tb ends, cmd is interrupted
// and, if it has not exited after grace, killed; if tb failed, the last
// 8 KiB of logs (when not nil) are logged under name. Start fails tb when
// cmd cannot start.
func Start(tb testing.TB, name string, cmd *exec.Cmd, grace time.Duration, logs *Output) <-chan struct{} {
	tb.Helper()
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			<-exited
		}
		if tb.Failed() && logs != nil {
			tb.Logf("%s logs:\n%s", name, logs.Tail(8<<10))
		}
	})
	return exited
}

// FreeAddr returns a loopback TCP address (127.0.0.1:port) that was free
// a moment ago.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
