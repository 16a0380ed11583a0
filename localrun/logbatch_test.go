package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingWriter records what was written and in how many writes.
type countingWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

func (w *countingWriter) snapshot() (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String(), w.writes
}

// Lines written concurrently come out whole, each writer's in its order,
// none lost, in fewer writes than lines, and all of them by Close.
func TestLineBatcherKeepsWholeLinesInOrder(t *testing.T) {
	for _, tt := range []struct {
		name  string
		delay time.Duration
		limit int
	}{
		{"by delay", time.Hour, 1 << 20},
		{"by size", time.Hour, 256},
		{"by timer", time.Millisecond, 1 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out countingWriter
			b := newLineBatcher(&out, tt.delay, tt.limit)
			const writers, lines = 8, 200
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range lines {
						line := fmt.Sprintf("writer=%d line=%d %s\n", w, i, strings.Repeat("x", i%50))
						if n, err := b.Write([]byte(line)); n != len(line) || err != nil {
							t.Errorf("Write = %d, %v", n, err)
						}
					}
				}()
			}
			wg.Wait()
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			got, writes := out.snapshot()
			next := make([]int, writers)
			all := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
			for _, l := range all {
				var w, i int
				if _, err := fmt.Sscanf(l, "writer=%d line=%d", &w, &i); err != nil || w < 0 || w >= writers {
					t.Fatalf("torn or foreign line %q", l)
				}
				if want := fmt.Sprintf("writer=%d line=%d %s", w, i, strings.Repeat("x", i%50)); l != want {
					t.Fatalf("line %q, want %q", l, want)
				}
				if i != next[w] {
					t.Fatalf("writer %d: line %d after %d", w, i, next[w]-1)
				}
				next[w]++
			}
			if len(all) != writers*lines {
				t.Fatalf("%d lines out, want %d", len(all), writers*lines)
			}
			if writes >= writers*lines {
				t.Errorf("%d writes for %d lines: nothing batched", writes, writers*lines)
			}
		})
	}
}

// A line is written within the delay without any further Write or Close,
// and after Close lines go straight through.
func TestLineBatcherFlushesAfterTheDelay(t *testing.T) {
	var out countingWriter
	b := newLineBatcher(&out, 5*time.Millisecond, 1<<20)
	b.Write([]byte("first\n"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got, _ := out.snapshot(); got == "first\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a waiting line was not written after the delay")
		}
		time.Sleep(time.Millisecond)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b.Write([]byte("after close\n"))
	if got, _ := out.snapshot(); got != "first\nafter close\n" {
		t.Fatalf("after Close: %q", got)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, fmt.Errorf("disk full") }

// A failed batch write is reported, once, by Close (or the next Write).
func TestLineBatcherReportsAWriteError(t *testing.T) {
	b := newLineBatcher(failingWriter{}, time.Hour, 1<<20)
	b.Write([]byte("lost\n"))
	if err := b.Close(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Close = %v, want the write's error", err)
	}
}

// A warning is written at once, after the info lines before it, by a
// logger built like serve's, and derived loggers (With) keep that.
func TestUrgentHandlerWritesWarningsAtOnce(t *testing.T) {
	var out countingWriter
	b := newLineBatcher(&out, time.Hour, 1<<20)
	log := slog.New(urgentHandler{slog.NewTextHandler(b, nil), b})
	log.Info("first")
	if got, _ := out.snapshot(); got != "" {
		t.Fatalf("an info line was written at once: %q", got)
	}
	log.With("cluster", "c1").Warn("privileged certificate issued")
	got, _ := out.snapshot()
	if !strings.Contains(got, "msg=first") || !strings.Contains(got, `msg="privileged certificate issued" cluster=c1`) ||
		strings.Index(got, "msg=first") > strings.Index(got, "privileged") {
		t.Fatalf("after a warning: %q", got)
	}
	log.Error("failed")
	if got, _ := out.snapshot(); !strings.Contains(got, "msg=failed") {
		t.Fatalf("an error line waits: %q", got)
	}
}
