// Package lambdaapp is what every Lambda function's main does: read the
// configuration from CLUSTERKEYS_* variables, open the backends once per
// execution environment (not per request), build the gateway around the
// function's routes (from the table in pkg/functions), and hand it to the
// Lambda runtime.
package lambdaapp

import (
	"context"
	"fmt"
	"os"

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
	if err := Run(context.Background(), fn); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// Run serves fn as a Lambda function. It returns only on a start-up
// error. It does not look fn up in functions.All: that would link every
// function's services into each binary.
func Run(ctx context.Context, fn functions.Function) error {
	name := fn.Name
	cfg, err := config.FromEnv()
	if err != nil {
		return fmt.Errorf("%s: config: %w", name, err)
	}
	log, err := cfg.NewLogger(os.Stderr)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	log = log.With("function", name)
	reg := metrics.NewRegistry()
	b, err := backends.Open(ctx, cfg, log, reg)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer b.Close()
	deps := &functions.Deps{Config: cfg, Backends: b, Logger: log, Registry: reg}
	routes, err := fn.Build(deps)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	authenticator, err := authn.New(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	// In-flight limits matter little here (a Lambda sandbox serves one
	// request at a time), but the same flags mean the same thing everywhere.
	limits := &gateway.Limits{MaxInFlight: cfg.MaxInFlight, RouteMaxInFlight: map[string]int{gateway.ValidateRoute: cfg.MaxInFlightValidate},
		MaxAuthFailures: cfg.MaxAuthFailures, AuthFailureWindow: cfg.AuthFailureWindow}
	g, err := gateway.New(gateway.Config{Auth: authenticator, Logger: log, Registry: reg, Ready: b.Ready, Limits: limits},
		routes...)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	lambdahttp.Start(g)
	return nil
}
