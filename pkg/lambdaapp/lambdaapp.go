// Package lambdaapp is what every Lambda function's main does: read the
// configuration from CLUSTERKEYS_* variables, open the backends once per
// execution environment (not per request), build the gateway around the
// function's routes (from the table in pkg/functions), and hand it to the
// Lambda runtime.
//
// The backends open from the start of main while the Lambda runtime asks
// for the first event: a cold start's connection to the store (and its
// schema check) overlaps the Runtime API's first /next and the event's
// decoding, and the first invocation waits for it. A configuration error
// stops the function before it asks for an event; a start that fails to
// open the backends ends the process with the same message and exit status
// 1 as before, and an invocation already waiting gets 503
// backend_unavailable (or fails as the process exits); the Lambda service
// then starts afresh.
package lambdaapp

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/authn"
	"github.com/clusterkeys/clusterkeys/pkg/backends"
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/functions"
	"github.com/clusterkeys/clusterkeys/pkg/gateway"
	"github.com/clusterkeys/clusterkeys/pkg/lambdahttp"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
)

// Main is a function's main: it serves fn (its entry in pkg/functions,
// e.g. functions.SignCSR) as a Lambda function, and exits 1 when it cannot
// start.
func Main(fn functions.Function) {
	err := Run(context.Background(), fn)
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// Run serves fn as a Lambda function. It returns only with a start-up
// error: at once for a configuration error, or when the backends fail to
// open (see the package doc). It does not look fn up in functions.All:
// that would link every function's services into each binary.
func Run(ctx context.Context, fn functions.Function) error {
	p, err := start(ctx, fn)
	if err != nil {
		return err
	}
	// The runtime asks for the first event on a goroutine of its own while
	// this one opens the backends: the connection is the longer path, so it
	// starts at once rather than when a thread picks its goroutine up.
	go lambdahttp.Start(p)
	if err := p.open(); err != nil {
		return err
	}
	select {} // lambdahttp.Start serves until the process ends
}

// start reads the configuration and returns fn's handler, whose open opens
// the backends and builds the gateway; until then a request waits.
func start(ctx context.Context, fn functions.Function) (*pending, error) {
	name := fn.Name
	cfg, err := config.FromEnv()
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", name, err)
	}
	log, err := cfg.NewLogger(os.Stderr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	log = log.With("function", name)
	reg := metrics.NewRegistry()
	return &pending{done: make(chan struct{}), build: func() (http.Handler, error) {
		h, err := build(ctx, fn, cfg, log, reg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return h, nil
	}}, nil
}

// build opens the backends cfg names and builds the gateway around fn's
// routes. The backends stay open for the life of the process.
func build(ctx context.Context, fn functions.Function, cfg config.Config, log *slog.Logger, reg *metrics.Registry) (http.Handler, error) {
	b, err := backends.Open(ctx, cfg, log, reg)
	if err != nil {
		return nil, err
	}
	deps := &functions.Deps{Config: cfg, Backends: b, Logger: log, Registry: reg}
	routes, err := fn.Build(deps)
	if err != nil {
		b.Close()
		return nil, err
	}
	authenticator, err := authn.New(ctx, cfg)
	if err != nil {
		b.Close()
		return nil, err
	}
	// In-flight limits matter little here (a Lambda sandbox serves one
	// request at a time), but the same flags mean the same thing everywhere.
	limits := &gateway.Limits{MaxInFlight: cfg.MaxInFlight, RouteMaxInFlight: map[string]int{gateway.ValidateRoute: cfg.MaxInFlightValidate},
		MaxAuthFailures: cfg.MaxAuthFailures, AuthFailureWindow: cfg.AuthFailureWindow}
	g, err := gateway.New(gateway.Config{Auth: authenticator, Logger: log, Registry: reg, Ready: b.Ready, Limits: limits},
		routes...)
	if err != nil {
		b.Close()
		return nil, err
	}
	return g, nil
}

// pending is the gateway while it is being built: a request waits for it.
type pending struct {
	build func() (http.Handler, error)
	done  chan struct{} // closed when open has set h or err
	h     http.Handler
	err   error
}

// open builds the gateway, once, and returns build's error.
func (p *pending) open() error {
	defer close(p.done)
	p.h, p.err = p.build()
	return p.err
}

// ServeHTTP serves r with the gateway once it is built. When it could not
// be built (the process is exiting with the error), or when r ends first
// (the invocation's deadline), it answers 503 backend_unavailable.
func (p *pending) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case <-p.done:
	case <-r.Context().Done():
		api.WriteError(w, api.ProblemJSON, "", fmt.Errorf("still opening the backends: %w", api.ErrUnavailable))
		return
	}
	if p.err != nil {
		api.WriteError(w, api.ProblemJSON, "", fmt.Errorf("cannot start: %w", api.ErrUnavailable))
		return
	}
	p.h.ServeHTTP(w, r)
}
