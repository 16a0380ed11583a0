package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Batching of `localrun serve`'s log lines.
//
// Each sign logs two lines (the access line and the "certificate issued"
// audit line), and slog's handlers write each line with its own write
// system call, under load some 3,000 a second to the journal, a file or a
// pipe, each also waking whoever reads the other end. serve's log writer
// instead keeps the lines of concurrent requests and writes them together:
// at most logBatchDelay after the first line of a batch, at once when a
// batch reaches logBatchMax bytes, and on Close (serve closes it on every
// way out, after the server has stopped, so a clean shutdown loses no
// line). Lines keep their order and stay whole: slog hands over one whole
// line per Write, and Write appends it under the same lock as the flush.
// Lines of level warn and above are written at once (urgentHandler), with
// every line before them.
//
// The cost is a crash window: when the process dies without running its
// deferred calls (SIGKILL, the OOM killer, a panic outside a handler, which
// the gateway does not recover), the info and debug lines of the last
// logBatchDelay at most are lost. Every certificate those lines speak of is in the registry
// already (the registry records each one before its answer).
var (
	// logBatchDelay is a variable so that a test can make it long.
	logBatchDelay = 5 * time.Millisecond
	logBatchMax   = 32 << 10
)

// urgentHandler writes each record of level warn or above through at once,
// with the lines waiting before it: a warning or an error (a privileged
// certificate issued, a failed request, a panic) is never in the crash
// window, and is on the log when the answer it concerns is sent.
type urgentHandler struct {
	slog.Handler
	out *lineBatcher
}

// Handle hands r to the wrapped handler, then flushes for warn and above.
func (h urgentHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		h.out.Flush()
	}
	return err
}

// WithAttrs keeps the flushing on the derived handler.
func (h urgentHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return urgentHandler{h.Handler.WithAttrs(as), h.out}
}

// WithGroup keeps the flushing on the derived handler.
func (h urgentHandler) WithGroup(name string) slog.Handler {
	return urgentHandler{h.Handler.WithGroup(name), h.out}
}

// lineBatcher is an io.Writer that batches the lines written to it into
// fewer writes to w; see above.
type lineBatcher struct {
	w     io.Writer
	delay time.Duration
	limit int

	mu     sync.Mutex
	buf    []byte
	timer  *time.Timer
	armed  bool
	closed bool
	err    error
}

// newLineBatcher returns a lineBatcher writing to w at most delay after a
// line came, or when limit bytes are waiting.
func newLineBatcher(w io.Writer, delay time.Duration, limit int) *lineBatcher {
	b := &lineBatcher{w: w, delay: delay, limit: limit}
	b.timer = time.AfterFunc(time.Hour, b.flushTimer)
	b.timer.Stop()
	return b
}

// Write keeps p (whole lines) for the next batch; after Close it writes p
// through. It reports the error of an earlier batch's write, if any.
func (b *lineBatcher) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.w.Write(p)
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) >= b.limit {
		b.flushLocked()
	} else if !b.armed {
		b.armed = true
		b.timer.Reset(b.delay)
	}
	if err := b.err; err != nil {
		b.err = nil
		return len(p), err
	}
	return len(p), nil
}

func (b *lineBatcher) flushTimer() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

// flushLocked writes the waiting lines in one write; b.mu is held.
func (b *lineBatcher) flushLocked() {
	if b.armed {
		b.timer.Stop()
		b.armed = false
	}
	if len(b.buf) == 0 {
		return
	}
	if _, err := b.w.Write(b.buf); err != nil && b.err == nil {
		b.err = err
	}
	if cap(b.buf) > 4*b.limit {
		b.buf = nil
		return
	}
	b.buf = b.buf[:0]
}

// Flush writes the waiting lines now.
func (b *lineBatcher) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

// Close writes the waiting lines and makes later writes go straight to w.
// It returns the error of a write that no Write reported yet.
func (b *lineBatcher) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	b.closed = true
	err := b.err
	b.err = nil
	return err
}
