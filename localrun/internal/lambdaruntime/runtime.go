// Package lambdaruntime is a local implementation of the AWS Lambda Runtime
// API, so that `localrun serve --exec` runs the real built `bootstrap`
// binaries (aws-lambda-go, provided.al2023) behind the gateway with no
// Docker and no AWS.
//
// A Runtime keeps Concurrency bootstrap processes of one function. Each
// process has its own Runtime API endpoint (AWS_LAMBDA_RUNTIME_API), so the
// runtime always knows which process holds which invocation: when a process
// crashes mid-invocation that invocation fails at once, and when an
// invocation passes its deadline its process is killed. Either way a new
// process is started, with backoff.
//
// The endpoints are those of the Runtime API 2018-06-01: invocation/next,
// invocation/{id}/response, invocation/{id}/error and init/error.
package lambdaruntime

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// MaxPayload is Lambda's limit on a synchronous request or response payload.
const MaxPayload = 6 << 20

// Function is a bootstrap binary and how to run it.
type Function struct {
	// Name is the function name (AWS_LAMBDA_FUNCTION_NAME).
	Name string
	// Path is the bootstrap executable.
	Path string
	// Env is added to the bootstrap's minimal environment (KEY=value).
	Env []string
	// Timeout bounds one invocation; 30 s when 0.
	Timeout time.Duration
	// Concurrency is how many bootstrap processes run; 1 when 0.
	Concurrency int
	// Logger receives the bootstraps' output and the runtime's events.
	Logger *slog.Logger
}

// InvocationError is a function error reported by the bootstrap through
// /invocation/{id}/error or /init/error, or raised by the runtime
// (Runtime.ExitError, Runtime.Timeout).
type InvocationError struct {
	Type    string `json:"errorType"`
	Message string `json:"errorMessage"`
}

func (e *InvocationError) Error() string {
	return fmt.Sprintf("function error %s: %s", e.Type, e.Message)
}

// Error types the runtime itself raises.
const (
	ErrorTypeExit    = "Runtime.ExitError"
	ErrorTypeTimeout = "Runtime.Timeout"
	ErrorTypeInit    = "Runtime.InitError"
)

// ErrClosed is returned by Invoke after Close.
var ErrClosed = errors.New("lambda runtime closed")

// Runtime runs one function's bootstraps.
type Runtime struct {
	f      Function
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	queue  chan *invocation
	slots  []*slot
	wg     sync.WaitGroup
}

type invocation struct {
	id       string
	payload  []byte
	deadline time.Time
	done     chan result
	once     sync.Once
}

type result struct {
	payload []byte
	err     error
}

func (inv *invocation) finish(r result) {
	inv.once.Do(func() { inv.done <- r })
}

// Start starts f's bootstraps, each behind its own Runtime API endpoint on
// 127.0.0.1.
func Start(ctx context.Context, f Function) (*Runtime, error) {
	if f.Timeout == 0 {
		f.Timeout = 30 * time.Second
	}
	if f.Concurrency <= 0 {
		f.Concurrency = 1
	}
	if f.Logger == nil {
		f.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Stat(f.Path); err != nil {
		return nil, fmt.Errorf("function %s: %w", f.Name, err)
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rt := &Runtime{
		f: f, log: f.Logger.With("function", f.Name), ctx: rctx, cancel: cancel,
		queue: make(chan *invocation, 1024),
	}
	for i := range f.Concurrency {
		s, err := newSlot(rt, i)
		if err != nil {
			rt.Close()
			return nil, err
		}
		rt.slots = append(rt.slots, s)
		rt.wg.Add(1)
		go func() { defer rt.wg.Done(); s.run() }()
	}
	return rt, nil
}

// Invoke runs one invocation with payload and returns the function's
// response payload, an *InvocationError, or a context error.
func (rt *Runtime) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("payload of %d bytes exceeds %d", len(payload), MaxPayload)
	}
	inv := &invocation{
		id: newID(), payload: payload, deadline: time.Now().Add(rt.f.Timeout),
		done: make(chan result, 1),
	}
	timer := time.NewTimer(rt.f.Timeout)
	defer timer.Stop()
	select {
	case rt.queue <- inv:
	case <-rt.ctx.Done():
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-inv.done:
		return r.payload, r.err
	case <-timer.C:
		err := &InvocationError{Type: ErrorTypeTimeout, Message: fmt.Sprintf("invocation %s timed out after %s", inv.id, rt.f.Timeout)}
		inv.finish(result{err: err})
		rt.killHolder(inv)
		return nil, err
	case <-ctx.Done():
		inv.finish(result{err: ctx.Err()})
		rt.killHolder(inv)
		return nil, ctx.Err()
	case <-rt.ctx.Done():
		return nil, ErrClosed
	}
}

// killHolder kills the process holding inv, if any: its work is abandoned.
func (rt *Runtime) killHolder(inv *invocation) {
	for _, s := range rt.slots {
		s.killIfHolding(inv)
	}
}

// Close stops every bootstrap and waits for them.
func (rt *Runtime) Close() error {
	rt.cancel()
	for _, s := range rt.slots {
		s.stop()
	}
	rt.wg.Wait()
	for {
		select {
		case inv := <-rt.queue:
			inv.finish(result{err: ErrClosed})
		default:
			return nil
		}
	}
}

// slot is one bootstrap process and its own Runtime API endpoint.
type slot struct {
	rt   *Runtime
	n    int
	ln   net.Listener
	srv  *http.Server
	addr string

	mu       sync.Mutex
	cmd      *exec.Cmd
	current  *invocation
	initErr  *InvocationError
	served   int // invocations the current process completed
	restarts []time.Time
}

func newSlot(rt *Runtime, n int) (*slot, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("runtime API listener: %w", err)
	}
	s := &slot{rt: rt, n: n, ln: ln, addr: ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", s.next)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", s.response)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", s.invocationError)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", s.initError)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// run keeps a bootstrap process going until the runtime closes.
func (s *slot) run() {
	log := s.rt.log.With("instance", s.n)
	backoff := 100 * time.Millisecond
	for s.rt.ctx.Err() == nil {
		started := time.Now()
		err := s.runOnce(log)
		if s.rt.ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		inv, initErr, served := s.current, s.initErr, s.served
		s.current, s.initErr, s.served = nil, nil, 0
		s.restarts = append(s.restarts, time.Now())
		for len(s.restarts) > 0 && time.Since(s.restarts[0]) > time.Minute {
			s.restarts = s.restarts[1:]
		}
		recent := len(s.restarts)
		s.mu.Unlock()

		exitErr := &InvocationError{Type: ErrorTypeExit, Message: fmt.Sprintf("bootstrap exited: %v", err)}
		if inv != nil {
			inv.finish(result{err: exitErr})
		} else if initErr != nil {
			// An init failure fails the invocation waiting for it, as
			// Lambda does, instead of letting it wait for its deadline.
			select {
			case queued := <-s.rt.queue:
				queued.finish(result{err: initErr})
			default:
			}
		}
		// A process that served invocations is replaced at once; one that
		// dies before serving any (a crash loop in its set-up) is retried
		// with a growing backoff, and slowly past 30 restarts a minute.
		wait := time.Duration(0)
		switch {
		case served > 0 || time.Since(started) > 10*time.Second:
			backoff = 100 * time.Millisecond
		default:
			wait = backoff
			if backoff *= 2; backoff > 5*time.Second {
				backoff = 5 * time.Second
			}
		}
		if recent > 30 {
			wait = 10 * time.Second
		}
		log.Warn("bootstrap exited; restarting", "err", err, "in_flight", inv != nil, "served", served, "wait", wait, "restarts_last_minute", recent)
		select {
		case <-time.After(wait):
		case <-s.rt.ctx.Done():
			return
		}
	}
}

// runOnce starts one process and waits for it to exit.
func (s *slot) runOnce(log *slog.Logger) error {
	f := s.rt.f
	cmd := exec.Command(f.Path)
	cmd.Env = append([]string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"TZ=UTC",
		"LANG=C.UTF-8",
		"AWS_LAMBDA_RUNTIME_API=" + s.addr,
		"AWS_LAMBDA_FUNCTION_NAME=" + f.Name,
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
		"AWS_REGION=local",
		"AWS_DEFAULT_REGION=local",
		"_HANDLER=bootstrap",
		"LAMBDA_TASK_ROOT=" + filepath.Dir(f.Path),
	}, f.Env...)
	cmd.Dir = filepath.Dir(f.Path)
	// Its own process group, so a kill reaches anything it started. No
	// Pdeathsig: Linux sends it when the forking thread exits, which Go's
	// scheduler does not promise to keep. An orphaned bootstrap exits on
	// its own when its Runtime API endpoint goes away.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start bootstrap: %w", err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			log.Info("bootstrap output", "line", sc.Text())
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	<-done
	err = cmd.Wait()
	s.mu.Lock()
	s.cmd = nil
	s.mu.Unlock()
	if err == nil {
		err = errors.New("exit status 0")
	}
	return err
}

// killIfHolding kills the process if it holds inv.
func (s *slot) killIfHolding(inv *invocation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current == inv && s.cmd != nil && s.cmd.Process != nil {
		s.rt.log.Warn("killing bootstrap past its deadline", "instance", s.n, "request_id", inv.id)
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	}
}

func (s *slot) stop() {
	s.mu.Lock()
	if s.cmd != nil && s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	_ = s.srv.Close()
}

// next hands the process the next invocation, long-polling until one comes.
func (s *slot) next(w http.ResponseWriter, r *http.Request) {
	for {
		var inv *invocation
		select {
		case inv = <-s.rt.queue:
		case <-r.Context().Done():
			return
		case <-s.rt.ctx.Done():
			http.Error(w, "runtime closed", http.StatusGone)
			return
		}
		if time.Now().After(inv.deadline) {
			continue // its caller gave up already
		}
		s.mu.Lock()
		s.current = inv
		s.mu.Unlock()
		h := w.Header()
		h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
		h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(inv.deadline.UnixMilli(), 10))
		h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:local:000000000000:function:"+s.rt.f.Name)
		h.Set("Lambda-Runtime-Trace-Id", "Root=1-"+inv.id[:8]+"-"+inv.id[8:]+";Sampled=0")
		h.Set("Content-Type", "application/json")
		_, _ = w.Write(inv.payload)
		return
	}
}

// take returns the slot's current invocation if its id is id.
func (s *slot) take(id string) *invocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current == nil || s.current.id != id {
		return nil
	}
	inv := s.current
	s.current = nil
	s.served++
	return inv
}

func (s *slot) response(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxPayload))
	if err != nil {
		http.Error(w, `{"errorType":"RequestEntityTooLarge","errorMessage":"response payload too large"}`, http.StatusRequestEntityTooLarge)
		return
	}
	inv := s.take(r.PathValue("id"))
	if inv == nil {
		http.Error(w, `{"errorType":"InvalidRequestID","errorMessage":"unknown or finished invocation"}`, http.StatusBadRequest)
		return
	}
	inv.finish(result{payload: body})
	w.WriteHeader(http.StatusAccepted)
}

func (s *slot) invocationError(w http.ResponseWriter, r *http.Request) {
	ie := readError(w, r)
	inv := s.take(r.PathValue("id"))
	if inv == nil {
		http.Error(w, `{"errorType":"InvalidRequestID","errorMessage":"unknown or finished invocation"}`, http.StatusBadRequest)
		return
	}
	inv.finish(result{err: ie})
	w.WriteHeader(http.StatusAccepted)
}

func (s *slot) initError(w http.ResponseWriter, r *http.Request) {
	ie := readError(w, r)
	if ie.Type == "" {
		ie.Type = ErrorTypeInit
	}
	s.rt.log.Error("bootstrap init failed", "instance", s.n, "error_type", ie.Type, "error", ie.Message)
	s.mu.Lock()
	s.initErr = ie
	s.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func readError(w http.ResponseWriter, r *http.Request) *InvocationError {
	body, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	ie := &InvocationError{}
	if err := json.Unmarshal(body, ie); err != nil || ie.Type == "" && ie.Message == "" {
		ie.Type = r.Header.Get("Lambda-Runtime-Function-Error-Type")
		ie.Message = string(bytes.TrimSpace(body))
	}
	if ie.Type == "" {
		ie.Type = "Unhandled"
	}
	return ie
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
