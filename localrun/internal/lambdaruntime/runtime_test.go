package lambdaruntime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bootstrap is the test bootstrap, built once by TestMain.
var bootstrap string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lambdaruntime-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bootstrap = filepath.Join(dir, "bootstrap")
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", bootstrap, "./testdata/testbootstrap")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build test bootstrap: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func start(t *testing.T, f Function) *Runtime {
	t.Helper()
	if f.Path == "" {
		f.Path = bootstrap
	}
	f.Name = "test"
	rt, err := Start(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rt.Close(); err != nil {
			t.Error(err)
		}
	})
	return rt
}

func get(t *testing.T, rt *Runtime, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, httptest.NewRequest("POST", path, strings.NewReader("hello")))
	return rec.Code, rec.Body.String()
}

var pidRE = regexp.MustCompile(`pid=(\d+)`)

func pidOf(t *testing.T, body string) string {
	t.Helper()
	m := pidRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no pid in %q", body)
	}
	return m[1]
}

func TestRuntime(t *testing.T) {
	rt := start(t, Function{Timeout: 5 * time.Second})

	code, body := get(t, rt, "/echo?x=1")
	if code != 200 || !strings.HasPrefix(body, "POST /echo?x=1 ") || !strings.HasSuffix(body, "body=hello") {
		t.Fatalf("echo: %d %q", code, body)
	}
	first := pidOf(t, body)

	t.Run("the bootstrap sees the deadline of the function's timeout", func(t *testing.T) {
		code, body := get(t, rt, "/deadline")
		var ok bool
		var ms int64
		if _, err := fmt.Sscanf(body, "deadline=%t remaining_ms=%d", &ok, &ms); err != nil || code != 200 || !ok {
			t.Fatalf("deadline: %d %q (%v)", code, body, err)
		}
		if ms <= 4000 || ms > 5000 {
			t.Fatalf("%d ms left at the start of an invocation with a 5 s timeout", ms)
		}
	})
	t.Run("a crash mid-invocation fails that invocation and a new process serves the next", func(t *testing.T) {
		if code, body := get(t, rt, "/crash"); code != http.StatusBadGateway || !strings.Contains(body, CodeFunctionError) {
			t.Fatalf("crash: %d %s", code, body)
		}
		code, body := get(t, rt, "/echo")
		if code != 200 || pidOf(t, body) == first {
			t.Fatalf("after a crash: %d %q (old pid %s)", code, body, first)
		}
	})
	t.Run("an invocation past its deadline times out and its process is replaced", func(t *testing.T) {
		_, before := get(t, rt, "/echo")
		if code, body := get(t, rt, "/sleep"); code != http.StatusGatewayTimeout || !strings.Contains(body, CodeFunctionTimeout) {
			t.Fatalf("sleep: %d %s", code, body)
		}
		code, after := get(t, rt, "/echo")
		if code != 200 || pidOf(t, after) == pidOf(t, before) {
			t.Fatalf("after a timeout: %d %q", code, after)
		}
	})
	t.Run("a function error is a 502 with its type", func(t *testing.T) {
		_, err := rt.Invoke(context.Background(), []byte(`{"version":"2.0","rawPath":"/error","requestContext":{"http":{"method":"GET"}}}`))
		var ie *InvocationError
		if !errors.As(err, &ie) || !strings.Contains(ie.Message, "refused by the function") {
			t.Fatalf("err = %v", err)
		}
		if code, _ := get(t, rt, "/error"); code != http.StatusBadGateway {
			t.Fatalf("status %d", code)
		}
	})
	t.Run("a panic is a function error, and the runtime recovers", func(t *testing.T) {
		if code, _ := get(t, rt, "/panic"); code != http.StatusBadGateway {
			t.Fatalf("panic: %d", code)
		}
		if code, _ := get(t, rt, "/echo"); code != 200 {
			t.Fatalf("after a panic: %d", code)
		}
	})
}

func TestConcurrencyRunsInvocationsInParallel(t *testing.T) {
	const n = 3
	rt := start(t, Function{Concurrency: n, Timeout: 10 * time.Second})
	var wg sync.WaitGroup
	pids := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := get(t, rt, "/slow")
			if code != 200 {
				t.Errorf("slow: %d %s", code, body)
				return
			}
			pids <- pidOf(t, body)
		}()
	}
	wg.Wait()
	close(pids)
	seen := map[string]bool{}
	for p := range pids {
		seen[p] = true
	}
	if len(seen) != n {
		t.Fatalf("%d concurrent invocations ran in %d processes, want %d", n, len(seen), n)
	}
}

func TestInitErrorFailsTheWaitingInvocation(t *testing.T) {
	rt := start(t, Function{Env: []string{"TESTBOOTSTRAP_INIT_FAIL=1"}, Timeout: 20 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err := rt.Invoke(ctx, []byte(`{}`))
	var ie *InvocationError
	if !errors.As(err, &ie) || ie.Type != "ConfigError" {
		t.Fatalf("err = %v, want the bootstrap's init error", err)
	}
}

func TestCloseLeavesNoProcess(t *testing.T) {
	rt, err := Start(context.Background(), Function{Name: "t", Path: bootstrap, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	_, body := get(t, rt, "/echo")
	// The process that answered, and whatever the slots run now (on a
	// loaded machine a slot may be between two processes).
	pid, err := strconv.Atoi(pidOf(t, body))
	if err != nil {
		t.Fatal(err)
	}
	pids := []int{pid}
	for _, s := range rt.slots {
		s.mu.Lock()
		if s.cmd != nil {
			pids = append(pids, s.cmd.Process.Pid)
		}
		s.mu.Unlock()
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range pids {
		if err := syscall.Kill(p, 0); err == nil {
			t.Errorf("process %d still alive after Close", p)
		}
	}
	if _, err := rt.Invoke(context.Background(), []byte(`{}`)); !errors.Is(err, ErrClosed) {
		t.Errorf("Invoke after Close = %v", err)
	}
}

func TestEventCarriesTheRequest(t *testing.T) {
	r := httptest.NewRequest("PUT", "/v1/clusters/a%2Fb/ca?x=1", strings.NewReader("\xff\x00"))
	r.Header.Set("Cookie", "a=1; b=2")
	r.Header.Set("X-Request-Id", "rid-1")
	ev, err := Event(r)
	if err != nil {
		t.Fatal(err)
	}
	if ev.RawPath != "/v1/clusters/a%2Fb/ca" || ev.RawQueryString != "x=1" || ev.RequestContext.HTTP.Method != "PUT" ||
		len(ev.Cookies) != 2 || ev.RequestContext.RequestID != "rid-1" || !ev.IsBase64Encoded {
		t.Fatalf("event = %+v", ev)
	}
}

func BenchmarkInvoke(b *testing.B) {
	rt, err := Start(context.Background(), Function{Name: "bench", Path: bootstrap, Concurrency: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := httptest.NewRecorder()
			rt.ServeHTTP(rec, httptest.NewRequest("GET", "/echo", nil))
			if rec.Code != 200 {
				b.Fatal(rec.Code, rec.Body.String())
			}
			_, _ = io.Copy(io.Discard, rec.Body)
		}
	})
}
