// Command validatebundle is the Lambda function for validate-TLS-bundle
// (POST /v1/tls/validate): certificate + key + intermediates → valid, or
// every precise reason why not. It links no store and no key custody, so
// its binary stays small and its cold start short.
// Build it as a bootstrap with `make lambda` (-tags lambda.norpc).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/clusterkeys/clusterkeys/pkg/authn"
	"github.com/clusterkeys/clusterkeys/pkg/barbicanref"
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/gateway"
	"github.com/clusterkeys/clusterkeys/pkg/lambdahttp"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
	"github.com/clusterkeys/clusterkeys/pkg/tlsbundle"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "validatebundle:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	log, err := cfg.NewLogger(os.Stderr)
	if err != nil {
		return err
	}
	authenticator, err := authn.New(ctx, cfg)
	if err != nil {
		return err
	}
	reg := metrics.NewRegistry()
	v, err := barbicanref.NewValidator(cfg, reg)
	if err != nil {
		return err
	}
	limits := &gateway.Limits{MaxInFlight: cfg.MaxInFlight, RouteMaxInFlight: map[string]int{gateway.ValidateRoute: cfg.MaxInFlightValidate},
		MaxAuthFailures: cfg.MaxAuthFailures, AuthFailureWindow: cfg.AuthFailureWindow}
	g, err := gateway.New(gateway.Config{Auth: authenticator, Logger: log.With("function", "validatebundle"), Registry: reg, Limits: limits},
		tlsbundle.Routes(v)...)
	if err != nil {
		return err
	}
	lambdahttp.Start(g)
	return nil
}
