package bench

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/clusterkeys/clusterkeys/pkg/functions"
)

// coldStartRuns is how many cold starts each bootstrap makes (alternating),
// unless CLUSTERKEYS_COLDSTART_RUNS says otherwise (more on a noisy machine).
func coldStartRuns(t *testing.T) int {
	t.Helper()
	s := os.Getenv("CLUSTERKEYS_COLDSTART_RUNS")
	if s == "" {
		return 21
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("CLUSTERKEYS_COLDSTART_RUNS=%q: want a positive number", s)
	}
	return n
}

// invocation is one Lambda event: what the Runtime API hands out and the
// status the bootstrap must answer it with.
type invocation struct {
	method, path, body string
	want               int
}

// bootstrap is one Lambda bootstrap under test.
type bootstrap struct {
	name string
	path string
	// prepare runs once, untimed, before the cold starts (creates what
	// the timed event needs and warms the page cache).
	prepare []invocation
	event   invocation
	starts  []time.Duration
	cpu     []time.Duration // user + system time of each cold start's process
	// baseline marks another build (CLUSTERKEYS_COLDSTART_BASELINE).
	baseline bool
}

// coldStartEvents are, per function, the untimed preparation and the timed
// event: a real request on one of its routes, authenticated, that reaches
// the store and custody when the function has them.
func coldStartEvents(t *testing.T, fx fixtures) map[string][2][]invocation {
	t.Helper()
	csr := string(mustJSON(t, map[string]string{"csr": fx.csrs[0], "profile": "client"}))
	wrap := string(mustJSON(t, map[string]string{"plaintext": base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))}))
	validate := string(mustJSON(t, map[string]string{"certificate": fx.leaf, "private_key": fx.leafKey, "intermediates": fx.inter, "ca_bundle": fx.root}))
	return map[string][2][]invocation{
		"rekeycluster": {
			{{"PUT", "/v1/clusters/bench/ca", `{"key_algorithm":"ecdsa-p256"}`, http.StatusCreated}},
			{{"GET", "/v1/clusters/bench/ca", "", http.StatusOK}},
		},
		"signcsr": {
			nil, // after rekeycluster's preparation
			{{"POST", "/v1/clusters/bench/certificates", csr, http.StatusCreated}},
		},
		"keywrap": {
			{{"POST", "/v1/keys", `{"name":"bench"}`, http.StatusCreated}},
			{{"POST", "/v1/keys/bench/wrap", wrap, http.StatusOK}},
		},
		"validatebundle": {
			nil,
			{{"POST", "/v1/tls/validate", validate, http.StatusOK}},
		},
	}
}

// TestColdStart is the cold-start comparison of issue 13: each function's
// bootstrap (bin/lambda/<f>/bootstrap, built by make lambda) beside a
// hello-world aws-lambda-go bootstrap built with the same flags, from exec
// to the first reply through a Runtime API, in alternating runs.
func TestColdStart(t *testing.T) {
	bin := os.Getenv("CLUSTERKEYS_BIN")
	if bin == "" {
		t.Fatal("CLUSTERKEYS_BIN must name the directory holding lambda/<function>/bootstrap (make lambda)")
	}
	load := loadAverage()
	dir := t.TempDir()
	fx := newFixtures(t, dir)
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "tokens.csv"), []byte(benchToken+",bench,ops,\"admin\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runs := coldStartRuns(t)
	hello := &bootstrap{name: "hello-world", path: buildHello(t, dir, "hello", false), event: invocation{"GET", "/", "", http.StatusOK}}
	// The same with cgo, so dynamically linked: what a bootstrap that links
	// pkcs11 custody (or was built before make lambda built static ones)
	// pays for the dynamic loader.
	helloCgo := &bootstrap{name: "hello-world (cgo)", path: buildHello(t, dir, "hello", true), event: hello.event}
	events := coldStartEvents(t, fx)
	boots := []*bootstrap{hello, helloCgo}
	for _, f := range functions.All {
		ev, ok := events[f.Name]
		if !ok {
			t.Fatalf("no cold-start event for function %s", f.Name)
		}
		p := filepath.Join(bin, "lambda", f.Name, "bootstrap")
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%v (make lambda)", err)
		}
		boots = append(boots, &bootstrap{name: f.Name, path: p, prepare: ev[0], event: ev[1][0]})
		// Another build of the same function (an older commit) measured in
		// the same alternation, for a before/after.
		if base := os.Getenv("CLUSTERKEYS_COLDSTART_BASELINE"); base != "" {
			boots = append(boots, &bootstrap{name: f.Name + " (baseline)", path: filepath.Join(base, "lambda", f.Name, "bootstrap"), event: ev[1][0], baseline: true})
		}
	}
	env := append(os.Environ(), "CLUSTERKEYS_STATE_DIR="+state)
	// The store of the SAM deployment, which make lambda builds for:
	// PostgreSQL (its bootstraps link no SQLite). CLUSTERKEYS_COLDSTART_STORE=sqlite
	// measures bootstraps built with SQLite (make lambda LAMBDA_BACKENDS=) on
	// a SQLite file in the state directory instead.
	storeName := "PostgreSQL (a private server on a unix socket, test/scripts/postgres.sh)"
	switch s := os.Getenv("CLUSTERKEYS_COLDSTART_STORE"); s {
	case "sqlite":
		storeName = "SQLite"
	case "", "postgres":
		dsn, ok := startPostgres(t)
		if !ok {
			t.Fatal("no PostgreSQL server, which the store functions' bootstraps use: bash test/scripts/postgres.sh install (or CLUSTERKEYS_COLDSTART_STORE=sqlite with bootstraps built by make lambda LAMBDA_BACKENDS=)")
		}
		env = append(env, "CLUSTERKEYS_STORE="+dsn)
		// The floor a PostgreSQL store sets: hello-world plus a connection
		// and one query.
		boots = append(boots, &bootstrap{name: "hello-world + PostgreSQL", path: buildHello(t, dir, "hellopg", false), event: hello.event})
	default:
		t.Fatalf("CLUSTERKEYS_COLDSTART_STORE=%q: want postgres (the default) or sqlite", s)
	}
	boots = slices.DeleteFunc(boots, func(b *bootstrap) bool {
		for _, ev := range append(slices.Clone(b.prepare), b.event) {
			_, _, err := coldStart(b.path, env, ev)
			if err != nil && b.baseline && strings.Contains(err.Error(), "newer than this binary knows") {
				// An older build refuses the schema the newer one
				// migrated to: it cannot be measured on this store.
				t.Logf("%s: left out: it does not know the store's schema: %v", b.name, err)
				return true
			}
			if err != nil {
				t.Fatalf("%s: prepare %s %s: %v", b.name, ev.method, ev.path, err)
			}
		}
		return false
	})
	for run := range runs {
		// Rotate who goes first, so that no bootstrap always follows the
		// same one.
		for i := range boots {
			b := boots[(i+run)%len(boots)]
			d, cpu, err := coldStart(b.path, env, b.event)
			if err != nil {
				t.Fatalf("%s: cold start %d: %v", b.name, run, err)
			}
			b.starts = append(b.starts, d)
			b.cpu = append(b.cpu, cpu)
		}
	}
	for _, b := range boots {
		t.Logf("%-15s p50 %s p90 %s CPU p50 %s", b.name, ms(pctOf(b.starts, .5)), ms(pctOf(b.starts, .9)), ms(pctOf(b.cpu, .5)))
	}
	addSection("coldstart", coldStartMarkdown(boots, load, storeName, runs))
}

// buildHello builds testdata/<name> with the flags of make lambda: static
// (CGO_ENABLED=0), as make lambda builds the bootstraps that link no pkcs11
// custody and as AWS documents building a Go bootstrap, or with cgo
// (dynamically linked) when cgo.
func buildHello(t *testing.T, dir, name string, cgo bool) string {
	t.Helper()
	outDir, env := name, "CGO_ENABLED=0"
	if cgo {
		outDir, env = name+"-cgo", "CGO_ENABLED=1"
	}
	out := filepath.Join(dir, outDir, "bootstrap")
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", out, "./testdata/"+name)
	cmd.Env = append(os.Environ(), env)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the %s bootstrap: %v\n%s", name, err, b)
	}
	return out
}

func pctOf(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1))]
}

// coldStart execs path behind a fresh Runtime API that hands out ev once,
// and returns the time from exec to the bootstrap's reply and the CPU time
// (user + system) the process used. The process is killed after its reply,
// when it waits for the next event.
func coldStart(path string, env []string, ev invocation) (time.Duration, time.Duration, error) {
	api, err := newRuntimeAPI(ev)
	if err != nil {
		return 0, 0, err
	}
	defer api.close()
	var stderr strings.Builder
	cmd := exec.Command(path)
	cmd.Env = append(slices.Clone(env), "AWS_LAMBDA_RUNTIME_API="+api.addr,
		"AWS_LAMBDA_FUNCTION_NAME=bench", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=512")
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() time.Duration {
		_ = cmd.Process.Kill()
		<-exited
		return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	select {
	case r := <-api.replies:
		d := r.at.Sub(start)
		<-api.next // it asks for the next event: its work is done
		cpu := stop()
		if r.err != nil {
			return 0, 0, fmt.Errorf("%w\n%s", r.err, stderr.String())
		}
		return d, cpu, nil
	case err := <-exited:
		return 0, 0, fmt.Errorf("exited before replying (%v):\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		stop()
		return 0, 0, fmt.Errorf("no reply in 30 s:\n%s", stderr.String())
	}
}

// reply is what a bootstrap posted for the one invocation.
type reply struct {
	at  time.Time
	err error
}

// runtimeAPI is a minimal Lambda Runtime API: it hands out one HTTP API
// (payload 2.0) event and receives its response or error.
type runtimeAPI struct {
	addr    string
	srv     *http.Server
	replies chan reply
	next    chan struct{} // closed when the bootstrap asks for a second event
}

func newRuntimeAPI(ev invocation) (*runtimeAPI, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	req := events.APIGatewayV2HTTPRequest{
		Version: "2.0", RouteKey: "$default", RawPath: ev.path, Body: ev.body,
		Headers: map[string]string{"authorization": "Bearer " + benchToken, "content-type": "application/json"},
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RequestID: "bench-cold-start",
			HTTP:      events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: ev.method, Path: ev.path, Protocol: "HTTP/1.1", SourceIP: "127.0.0.1"},
		},
	}
	payload, err := jsonBytes(req)
	if err != nil {
		ln.Close()
		return nil, err
	}
	a := &runtimeAPI{addr: ln.Addr().String(), replies: make(chan reply, 4), next: make(chan struct{})}
	served := false
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", func(w http.ResponseWriter, r *http.Request) {
		if served { // one invocation per cold start: the next waits
			close(a.next)
			<-r.Context().Done()
			return
		}
		served = true
		h := w.Header()
		h.Set("Lambda-Runtime-Aws-Request-Id", "bench-1")
		h.Set("Lambda-Runtime-Deadline-Ms", fmt.Sprint(time.Now().Add(time.Minute).UnixMilli()))
		h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:bench")
		h.Set("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
		h.Set("Content-Type", "application/json")
		_, _ = w.Write(payload)
	})
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		at := time.Now()
		if err == nil {
			err = checkReply(b, ev.want)
		}
		w.WriteHeader(http.StatusAccepted)
		a.replies <- reply{at: at, err: err}
	})
	failed := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
		a.replies <- reply{at: time.Now(), err: fmt.Errorf("%s: %s", r.URL.Path, b)}
	}
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", failed)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", failed)
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = a.srv.Serve(ln) }()
	return a, nil
}

func (a *runtimeAPI) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = a.srv.Shutdown(ctx)
	_ = a.srv.Close()
}

// checkReply checks a bootstrap's response to the HTTP API event.
func checkReply(b []byte, want int) error {
	var resp events.APIGatewayV2HTTPResponse
	if err := jsonUnmarshal(b, &resp); err != nil {
		return fmt.Errorf("response is not an HTTP API response: %w: %s", err, b)
	}
	if resp.StatusCode != want {
		return errors.New(fmt.Sprintf("status %d, want %d: %s", resp.StatusCode, want, resp.Body))
	}
	return nil
}

func coldStartMarkdown(boots []*bootstrap, load, storeName string, runs int) string {
	var b strings.Builder
	b.WriteString("## Cold starts: each function's bootstrap beside a hello-world bootstrap\n\n")
	b.WriteString("Each Lambda bootstrap (`make lambda`: `-tags 'lambda.norpc clusterkeys.metrics.none' -trimpath -ldflags='-s -w'` and the\n")
	b.WriteString("backends of the SAM deployment, `clusterkeys.store.postgres clusterkeys.keys.software`) and a\n")
	b.WriteString("hello-world aws-lambda-go bootstrap built with the same flags and CGO_ENABLED=0, as make lambda\n")
	b.WriteString("builds the bootstraps that link no pkcs11 custody (test/bench/testdata/hello; the ratios are to\n")
	b.WriteString("it, and \"hello-world (cgo)\" is the same built with cgo, dynamically linked), are\n")
	b.WriteString("started as a fresh process behind a minimal Runtime API on loopback that hands out one HTTP API\n")
	b.WriteString("event; the time is from exec to the bootstrap's reply (its POST of the response). The events\n")
	b.WriteString("are real requests, authenticated by a token file: rekeycluster reads the cluster's CA,\n")
	b.WriteString("signcsr signs a P-256 CSR (recorded in the registry), keywrap wraps 32 bytes, validatebundle\n")
	b.WriteString("validates leaf + key + intermediate + root. Store functions use software custody and the store\n")
	b.WriteString("below, prepared before the timed runs; each cold start opens its own connection. The\n")
	b.WriteString("hello-world answers any event; on PostgreSQL, \"hello-world + PostgreSQL\" (testdata/hellopg)\n")
	b.WriteString("also connects and runs SELECT 1 before answering: the floor a store function's connection sets.\n\n")
	fmt.Fprintf(&b, "- store: %s\n", storeName)
	b.WriteString(machineLines(load))
	fmt.Fprintf(&b, "- runs: %d cold starts per bootstrap, alternating\n\n", runs)
	hello := boots[0]
	helloSize := fileSize(hello.path)
	b.WriteString("| bootstrap | p50 exec → reply | p90 | CPU p50 | ratio to hello-world (p50) | size | ratio to hello-world (size) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, bt := range boots {
		size := fileSize(bt.path)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f × | %.1f MB | %.2f × |\n", bt.name, ms(pctOf(bt.starts, .5)), ms(pctOf(bt.starts, .9)),
			ms(pctOf(bt.cpu, .5)), float64(pctOf(bt.starts, .5))/float64(pctOf(hello.starts, .5)), float64(size)/1e6, float64(size)/float64(helloSize))
	}
	b.WriteString("\nCPU is the process's user + system time (all its threads) up to its request for a second\n")
	b.WriteString("event. Goals (issue 13): p50 ≤ 1.5 × and size ≤ 2.5 × the hello-world bootstrap's.\n")
	return b.String()
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}
