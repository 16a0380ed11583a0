// Command kmsshim is the clusterkeys KMS shim: a long-running Kubernetes KMS
// v2 plugin on a unix socket that wraps kube-apiserver's seeds under a
// clusterkeys KEK (pkg/kmsplugin does the work; this file only wires).
//
//	kmsshim --listen unix:///var/run/clusterkeys/kms.sock --keys software|pkcs11|barbican \
//	        --state-dir DIR --key NAME [--key-project PROJECT] [--metrics-listen 127.0.0.1:9464]
//
// The KEK belongs to --key-project, by default the reserved
// "clusterkeys:kms" that no token carries: through the gateway only a
// global admin can then wrap or unwrap with it.
//
// Every flag is also settable as CLUSTERKEYS_<FLAG>; the PKCS#11 PIN comes
// from --pkcs11-pin-file or CLUSTERKEYS_PKCS11_PIN, never from a flag.
// SIGTERM or SIGINT stops it gracefully.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/clusterkeys/clusterkeys/pkg/backends"
	_ "github.com/clusterkeys/clusterkeys/pkg/backends/all" // every store and custody backend
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/kmsplugin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		var usageErr *config.UsageError
		switch {
		case errors.Is(err, pflag.ErrHelp):
		case errors.As(err, &usageErr):
			fmt.Fprintln(os.Stderr, usageErr)
			os.Exit(2)
		default:
			fmt.Fprintln(os.Stderr, "kmsshim:", err)
			os.Exit(1)
		}
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := config.Default()
	cfg.Listen = kmsplugin.DefaultListen
	opts := kmsplugin.DefaultOptions()
	fs := pflag.NewFlagSet("kmsshim", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.BindFlags(fs)
	opts.BindFlags(fs)
	fs.Lookup("listen").Usage = "KMS v2 socket, unix:///absolute/path.sock (mode 0600)"
	for _, n := range []string{"token-auth-file", "auth", "tls-cert-file", "tls-private-key-file", "insecure-http"} {
		_ = fs.MarkHidden(n) // the shim serves no HTTP API
	}
	if err := config.Parse(fs, args, 0); err != nil {
		return err
	}
	if err := config.ApplyEnv(fs, os.LookupEnv); err != nil {
		return err
	}
	cfg, err := cfg.Resolve()
	if err != nil {
		return err
	}
	opts.Listen = cfg.Listen
	log, err := cfg.NewLogger(stderr)
	if err != nil {
		return err
	}
	// One P and a larger GC target unless GOMAXPROCS or GOGC say otherwise
	// (see kmsplugin.DefaultMaxProcs and DefaultGCPercent).
	procs, gcPercent := kmsplugin.TuneRuntime(os.LookupEnv)
	log.Info("kms runtime", "gomaxprocs", procs, "gc_percent", gcPercent)
	opts.Registry = kmsplugin.NewRegistry()
	b, err := backends.Open(ctx, cfg, log, opts.Registry)
	if err != nil {
		return err
	}
	defer b.Close()
	// The shim is long-running: it collects what crashes leave in custody
	// like localrun does, one instance at a time through the store's lease.
	// It starts once the shim listens, so its first listing of custody does
	// not run beside the KEK's creation at start.
	rctx, stop := context.WithCancel(ctx)
	wait := func() {}
	defer func() { stop(); wait() }()
	opts.CacheKEKs(b.Custody)
	kw := keywrap.New(b.Store, b.Custody, keywrap.Options{Logger: log, Registerer: opts.Registry, ActiveTTL: opts.RefreshInterval})
	return kmsplugin.Run(ctx, opts, kw, log, func(*kmsplugin.Server) {
		wait = b.StartReconciler(rctx, cfg, log, opts.Registry)
	})
}
