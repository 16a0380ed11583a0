package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A clean shutdown writes every log line serve's batching writer still
// holds: with a batch delay far longer than the test, the access line of
// a request must be on stderr when serve returns.
func TestServeWritesWaitingLogLinesOnShutdown(t *testing.T) {
	old := logBatchDelay
	logBatchDelay = time.Hour
	t.Cleanup(func() { logBatchDelay = old })

	state := t.TempDir()
	const token = "serve-test-token-0123456789"
	if err := os.WriteFile(filepath.Join(state, "tokens.csv"), []byte(token+",tester,ops,\"admin\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, []string{"--listen", addr, "--state-dir", state}, &stdout, &stderr)
	}()
	url := "http://" + addr + "/v1/clusters/nosuch/ca"
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("GET %s = %d, want 404", url, resp.StatusCode)
			}
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve returned %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not answering after 30 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
	logs := stderr.String()
	for _, want := range []string{"msg=request method=GET route=", "path=/v1/clusters/nosuch/ca status=404", "msg=\"shutting down\""} {
		if !strings.Contains(logs, want) {
			t.Errorf("stderr after shutdown lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, token) {
		t.Error("the token reached the log")
	}
}
