package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/pflag"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/authn"
	"github.com/clusterkeys/clusterkeys/pkg/backends"
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/functions"
	"github.com/clusterkeys/clusterkeys/pkg/gateway"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
	"github.com/clusterkeys/clusterkeys/pkg/tlsserve"
)

// stack is an opened configuration: backends and the functions' services.
type stack struct {
	cfg      config.Config
	log      *slog.Logger
	reg      *metrics.Registry
	backends *backends.Backends
	// deps builds the functions' services once, shared by all of them.
	deps     *functions.Deps
	auth     auth.Authenticator
	newToken string
}

func openStack(ctx context.Context, cfg config.Config, log *slog.Logger) (*stack, error) {
	s := &stack{cfg: cfg, log: log, reg: metrics.NewProcessRegistry()}
	b, err := backends.Open(ctx, cfg, log, s.reg)
	if err != nil {
		return nil, err
	}
	s.backends = b
	if cfg.Auth == "token-file" {
		if s.newToken, err = auth.EnsureTokenFile(cfg.TokenAuthFile); err != nil {
			b.Close()
			return nil, err
		}
	}
	if s.auth, err = authn.New(ctx, cfg); err != nil {
		b.Close()
		return nil, err
	}
	s.deps = &functions.Deps{Config: cfg, Backends: b, Logger: log, Registry: s.reg}
	if err := s.deps.Init(); err != nil {
		b.Close()
		return nil, err
	}
	return s, nil
}

// gateway builds the gateway for the named functions (all when none).
func (s *stack) gateway(names ...string) (*gateway.Gateway, error) {
	var routes []api.Route
	for _, f := range functions.All {
		if len(names) == 0 || slices.Contains(names, f.Name) {
			routes = append(routes, f.Routes(s.deps)...)
		}
	}
	return gateway.New(gateway.Config{Auth: s.auth, Logger: s.log, Registry: s.reg, Ready: s.backends.Ready,
		Limits: &gateway.Limits{MaxInFlight: s.cfg.MaxInFlight, RouteMaxInFlight: map[string]int{gateway.ValidateRoute: s.cfg.MaxInFlightValidate},
			MaxAuthFailures: s.cfg.MaxAuthFailures, AuthFailureWindow: s.cfg.AuthFailureWindow}}, routes...)
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := config.Default()
	fs := pflag.NewFlagSet("localrun serve", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.BindFlags(fs)
	execMode := fs.Bool("exec", false, "run the built Lambda bootstraps behind a local Lambda Runtime API instead of in process")
	binDir := fs.String("bin-dir", "bin/lambda", "with --exec: directory holding <function>/bootstrap")
	concurrency := fs.Int("concurrency", 2, "with --exec: bootstrap processes per function")
	pprofListen := fs.String("pprof-listen", "", "serve net/http/pprof on this loopback address (e.g. 127.0.0.1:6060); off when empty")
	if err := config.Parse(fs, args, 0); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return err
	}
	if err := config.ApplyEnv(fs, os.LookupEnv); err != nil {
		return err
	}
	cfg, err := cfg.Resolve()
	if err != nil {
		return err
	}
	// Log lines are written in batches (logbatch.go); the deferred Close,
	// which runs last, after the server stopped, writes what is waiting.
	logOut := newLineBatcher(stderr, logBatchDelay, logBatchMax)
	defer logOut.Close()
	log, err := cfg.NewLogger(logOut)
	if err != nil {
		return err
	}
	log = slog.New(urgentHandler{log.Handler(), logOut})
	gcPercent := tuneGC(os.LookupEnv)
	log.Debug("garbage collector", "gogc", gcPercent)
	// The listen policy and the certificate pair are checked before any
	// state is opened or created.
	if err := tlsserve.CheckListen(cfg.Listen, cfg.TLSCertFile != "", cfg.InsecureHTTP, log); err != nil {
		return err
	}
	var certs *tlsserve.Reloader
	if cfg.TLSCertFile != "" {
		if certs, err = tlsserve.NewReloader(cfg.TLSCertFile, cfg.TLSPrivateKeyFile, tlsserve.Options{CheckInterval: tlsserve.DefaultCheckInterval, Logger: log}); err != nil {
			return err
		}
	}

	stopPprof, err := servePprof(*pprofListen, log)
	if err != nil {
		return err
	}
	defer stopPprof()

	var handler http.Handler
	var cleanup func()
	var newToken string
	if *execMode {
		h, c, tok, err := execHandler(ctx, cfg, log, *binDir, *concurrency)
		if err != nil {
			return err
		}
		handler, cleanup, newToken = h, c, tok
	} else {
		s, err := openStack(ctx, cfg, log)
		if err != nil {
			return err
		}
		rctx, stop := context.WithCancel(ctx)
		wait := s.backends.StartReconciler(rctx, cfg, log, s.reg)
		cleanup = func() { stop(); wait(); s.backends.Close() }
		g, err := s.gateway()
		if err != nil {
			cleanup()
			return err
		}
		handler, newToken = g, s.newToken
	}
	defer cleanup()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// Failed handshakes and the like go to the structured log.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if certs != nil {
		srv.TLSConfig = certs.TLSConfig()
		scheme = "https"
	}
	printBanner(stdout, cfg, scheme+"://"+ln.Addr().String(), newToken, *execMode)

	errc := make(chan error, 1)
	go func() {
		if certs != nil {
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

func printBanner(w io.Writer, cfg config.Config, url, newToken string, execMode bool) {
	mode := "in process"
	if execMode {
		mode = "as Lambda bootstraps behind a local Runtime API"
	}
	fmt.Fprintf(w, "clusterkeys serving on %s (functions %s)\n", url, mode)
	if cfg.TLSCertFile != "" {
		fmt.Fprintf(w, "  tls:    %s, %s (reloaded when they change)\n", cfg.TLSCertFile, cfg.TLSPrivateKeyFile)
	}
	fmt.Fprintf(w, "  state:  %s (store %s, keys %s)\n", cfg.StateDir, cfg.StoreName(), cfg.Keys)
	if cfg.Auth == "keystone" {
		// No token file exists in this mode: callers bring a Keystone token.
		fmt.Fprintf(w, "  auth:   Keystone tokens (X-Auth-Token or Authorization: Bearer)\n")
		fmt.Fprintf(w, "\nCall it with a project-scoped Keystone token of a user with the member or admin role:\n\n")
		fmt.Fprintf(w, "  export OS_TOKEN=$(openstack token issue -f value -c id)\n\n")
		fmt.Fprintf(w, "Try:\n  curl -s -X PUT -H \"X-Auth-Token: $OS_TOKEN\" -H 'Content-Type: application/json' %s/v1/clusters/demo/ca -d '{}'\n", url)
	} else {
		fmt.Fprintf(w, "  tokens: %s\n", cfg.TokenAuthFile)
		if newToken != "" {
			fmt.Fprintf(w, "\nA new admin token was created. It is shown only this once (it is kept in %s):\n\n", cfg.TokenAuthFile)
			fmt.Fprintf(w, "  export CLUSTERKEYS_TOKEN=%s\n\n", newToken)
		} else {
			abs, _ := filepath.Abs(cfg.TokenAuthFile)
			fmt.Fprintf(w, "\nUse a token from %s:\n\n  export CLUSTERKEYS_TOKEN=$(grep -v '^#' %s | head -1 | cut -d, -f1)\n\n", cfg.TokenAuthFile, abs)
		}
		fmt.Fprintf(w, "Try:\n  curl -s -X PUT -H \"Authorization: Bearer $CLUSTERKEYS_TOKEN\" -H 'Content-Type: application/json' %s/v1/clusters/demo/ca -d '{}'\n", url)
	}
	fmt.Fprintf(w, "  curl -s %s/readyz\n\nCtrl-C stops.\n", url)
}
