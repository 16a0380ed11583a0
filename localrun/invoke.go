package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/spf13/pflag"

	"github.com/clusterkeys/clusterkeys/localrun/internal/lambdaruntime"
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/functions"
	"github.com/clusterkeys/clusterkeys/pkg/lambdahttp"
)

// maxEvent bounds an event file: Lambda's own synchronous payload limit.
const maxEvent = lambdaruntime.MaxPayload

// invoke sends one HTTP API (payload 2.0) event through one function, in
// process, and prints the Lambda response as JSON, like `sam local invoke`.
func invoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := config.Default()
	fs := pflag.NewFlagSet("localrun invoke", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.BindFlags(fs)
	eventFile := fs.StringP("event", "e", "", "file holding the event JSON (- for stdin)")
	if err := config.Parse(fs, args, 1); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() != 1 {
		return &config.UsageError{Command: fs.Name(), Err: errors.New("missing FUNCTION: localrun invoke FUNCTION --event FILE")}
	}
	if *eventFile == "" {
		return &config.UsageError{Command: fs.Name(), Err: errors.New("missing flag: --event FILE")}
	}
	fn, err := functions.Lookup(fs.Arg(0))
	if err != nil {
		return &config.UsageError{Command: fs.Name(), Err: err}
	}
	if err := config.ApplyEnv(fs, os.LookupEnv); err != nil {
		return err
	}
	if cfg, err = cfg.Resolve(); err != nil {
		return err
	}
	log, err := cfg.NewLogger(stderr)
	if err != nil {
		return err
	}
	var in io.Reader = os.Stdin
	if *eventFile != "-" {
		f, err := os.Open(*eventFile)
		if err != nil {
			return fmt.Errorf("read event: %w", err)
		}
		defer f.Close()
		in = f
	}
	raw, err := io.ReadAll(io.LimitReader(in, maxEvent+1))
	if err != nil {
		return fmt.Errorf("read event: %w", err)
	}
	if len(raw) > maxEvent {
		return fmt.Errorf("event is larger than %d bytes", maxEvent)
	}
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(raw, &ev); err != nil {
		return fmt.Errorf("event is not an HTTP API payload 2.0 event: %w", err)
	}
	s, err := openStack(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer s.backends.Close()
	if s.newToken != "" {
		fmt.Fprintf(stderr, "localrun: created %s with a new admin token\n", cfg.TokenAuthFile)
	}
	g, err := s.gateway(fn.Name)
	if err != nil {
		return err
	}
	resp, err := lambdahttp.Handler(g)(ctx, ev)
	if err != nil {
		return fmt.Errorf("invoke %s: %w", fn.Name, err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(resp)
}
