// Package lambdaapp is what every Lambda function's main does: read the
// configuration from CLUSTERKEYS_* variables, open the backends once per
// execution environment (not per request), build the gateway around the
// function's routes, and hand it to the Lambda runtime.
package lambdaapp

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/authn"
	"github.com/clusterkeys/clusterkeys/pkg/backends"
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/gateway"
	"github.com/clusterkeys/clusterkeys/pkg/lambdahttp"
)

// Deps are what a function's routes are built from.
type Deps struct {
	// Config is the function's resolved configuration.
	Config   config.Config
	Backends *backends.Backends
	Logger   *slog.Logger
	Registry *prometheus.Registry
}

// Run serves the routes built by routes as the Lambda function name. It
// returns only on a start-up error.
func Run(ctx context.Context, name string, routes func(Deps) []api.Route) error {
	cfg, err := config.FromEnv()
	if err != nil {
		return fmt.Errorf("%s: config: %w", name, err)
	}
	log, err := cfg.NewLogger(os.Stderr)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	log = log.With("function", name)
	reg := prometheus.NewRegistry()
	b, err := backends.Open(ctx, cfg, log, reg)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer b.Close()
	authenticator, err := authn.New(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	// In-flight limits matter little here (a Lambda sandbox serves one
	// request at a time), but the same flags mean the same thing everywhere.
	limits := &gateway.Limits{MaxInFlight: cfg.MaxInFlight, RouteMaxInFlight: map[string]int{gateway.ValidateRoute: cfg.MaxInFlightValidate},
		MaxAuthFailures: cfg.MaxAuthFailures, AuthFailureWindow: cfg.AuthFailureWindow}
	g, err := gateway.New(gateway.Config{Auth: authenticator, Logger: log, Registry: reg, Ready: b.Ready, Limits: limits},
		routes(Deps{Config: cfg, Backends: b, Logger: log, Registry: reg})...)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	lambdahttp.Start(g)
	return nil
}
