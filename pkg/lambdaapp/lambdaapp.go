// Package lambdaapp is what every Lambda function's main does: read the
// configuration from CLUSTERKEYS_* variables, open the backends once per
// execution environment (not per request), build the gateway around the
// function's routes (from the table in pkg/functions), and hand it to the
// Lambda runtime.
//
// The backends open in the background, from the start of main: a cold
// start's connection to the store (and its schema check) overlaps the
// rest of the start and the Runtime API's first /next, and the first
// invocation waits for it. A start that fails there ends the process as
// one that fails before /next does, with the same message and exit status
// 1; the Lambda service then fails that invocation and starts afresh.
package lambdaapp

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/authn"
	"github.com/clusterkeys/clusterkeys/pkg/backends"
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/functions"
	"github.com/clusterkeys/clusterkeys/pkg/gateway"
	"github.com/clusterkeys/clusterkeys/pkg/lambdahttp"
)

// Main is a function's main: it serves fn (its entry in pkg/functions,
// e.g. functions.SignCSR) as a Lambda function, and exits 1 when it cannot
// start.
func Main(fn functions.Function) {
	if err := Run(context.Background(), fn); err != nil {
		fail(err)
	}
}

// fail is how a function that cannot start ends: its error on stderr (it
// never holds a secret: see backends.Open), then exit status 1.
func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// Run serves fn as a Lambda function. It returns only on a configuration
// error; an error opening the backends or building the gateway, which
// happens in the background (see the package doc), ends the process at
// the first invocation as Main does. It does not look fn up in
// functions.All: that would link every function's services into each
// binary.
func Run(ctx context.Context, fn functions.Function) error {
	h, err := start(ctx, fn)
	if err != nil {
		return err
	}
	lambdahttp.Start(h)
	return nil
}

// start reads the configuration, then opens the backends and builds fn's
// gateway in the background: the handler it returns waits for them, and
// calls fail with the error if they could not be built.
func start(ctx context.Context, fn functions.Function) (http.Handler, error) {
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
	reg := prometheus.NewRegistry()
	p := &pending{done: make(chan struct{}), fail: fail}
	go func() {
		defer close(p.done)
		p.h, p.err = build(ctx, fn, cfg, log, reg)
		if p.err != nil {
			p.err = fmt.Errorf("%s: %w", name, p.err)
		}
	}()
	return p, nil
}

// build opens the backends cfg names and builds the gateway around fn's
// routes. The backends stay open for the life of the process.
func build(ctx context.Context, fn functions.Function, cfg config.Config, log *slog.Logger, reg *prometheus.Registry) (http.Handler, error) {
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
	done chan struct{} // closed when h or err is set
	h    http.Handler
	err  error
	fail func(error) // called with err instead of serving; does not return in a bootstrap
}

// ServeHTTP serves r with the gateway once it is built. When it could not
// be built, it calls fail with the start-up error; when r ends first (the
// invocation's deadline), it answers 503 backend_unavailable.
func (p *pending) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case <-p.done:
	case <-r.Context().Done():
		api.WriteError(w, api.ProblemJSON, "", fmt.Errorf("still opening the backends: %w", api.ErrUnavailable))
		return
	}
	if p.err != nil {
		p.fail(p.err)
		api.WriteError(w, api.ProblemJSON, "", fmt.Errorf("cannot start: %w", api.ErrUnavailable))
		return
	}
	p.h.ServeHTTP(w, r)
}
