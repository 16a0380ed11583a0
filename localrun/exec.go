package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/clusterkeys/clusterkeys/localrun/internal/lambdaruntime"
	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/functions"
	"github.com/clusterkeys/clusterkeys/pkg/gateway"
)

// execHandler starts every function's built bootstrap behind its own local
// Lambda Runtime API and returns a front router that sends each route to
// its function, as API Gateway would. The bootstraps authenticate and
// validate requests themselves; the front only routes, like API Gateway.
func execHandler(ctx context.Context, cfg config.Config, log *slog.Logger, binDir string, concurrency int) (http.Handler, func(), string, error) {
	// Open the stack once in process: it creates the state dir, the SQLite
	// schema, the master key and the token file before several bootstraps
	// race to, and it yields the route table.
	s, err := openStack(ctx, cfg, log)
	if err != nil {
		return nil, nil, "", err
	}
	env, err := bootstrapEnv(cfg)
	if err != nil {
		s.backends.Close()
		return nil, nil, "", err
	}
	var runtimes []*lambdaruntime.Runtime
	cleanup := func() {
		for _, rt := range runtimes {
			if err := rt.Close(); err != nil {
				log.Warn("stop runtime", "err", err)
			}
		}
		s.backends.Close()
	}
	var routes []api.Route
	for _, f := range functions.All {
		path := filepath.Join(binDir, f.Name, "bootstrap")
		if _, err := os.Stat(path); err != nil {
			cleanup()
			return nil, nil, "", fmt.Errorf("function %s: %w (build the bootstraps with 'make lambda')", f.Name, err)
		}
		rt, err := lambdaruntime.Start(ctx, lambdaruntime.Function{
			Name: f.Name, Path: path, Env: env, Timeout: 30 * time.Second,
			Concurrency: concurrency, Logger: log,
		})
		if err != nil {
			cleanup()
			return nil, nil, "", fmt.Errorf("start function %s: %w", f.Name, err)
		}
		runtimes = append(runtimes, rt)
		for _, r := range f.Routes(s.deps) {
			routes = append(routes, api.Route{
				Pattern: r.Pattern, Name: f.Name + ":" + r.Name, Public: true,
				MaxBody: lambdaruntime.MaxPayload, Format: r.Format,
				Handler: forward(rt),
			})
		}
	}
	g, err := gateway.New(gateway.Config{Logger: log, Registry: s.reg, Ready: s.backends.Ready}, routes...)
	if err != nil {
		cleanup()
		return nil, nil, "", err
	}
	// The bootstraps are Lambda-like and short-lived; the front process
	// lives as long as localrun and runs the custody reconciler.
	rctx, stop := context.WithCancel(ctx)
	wait := s.backends.StartReconciler(rctx, cfg, log, s.reg)
	return g, func() { stop(); wait(); cleanup() }, s.newToken, nil
}

// forward hands the request to a function's runtime, carrying the front
// gateway's request id, so that both gateways and the answer name one id.
func forward(rt *lambdaruntime.Runtime) api.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if rid := gateway.RequestID(r.Context()); rid != "" {
			r.Header.Set("X-Request-Id", rid)
		}
		rt.ServeHTTP(w, r)
		return nil
	}
}

// bootstrapEnv is the environment that points every bootstrap at the same
// state as localrun: the same store, custody and token file.
func bootstrapEnv(cfg config.Config) ([]string, error) {
	abs := func(p string) (string, error) {
		if p == "" {
			return "", nil
		}
		return filepath.Abs(p)
	}
	stateDir, err := abs(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	tokens, err := abs(cfg.TokenAuthFile)
	if err != nil {
		return nil, err
	}
	store := cfg.Store
	if b, path, ok := config.StoreFor(store); ok && b.Path {
		prefix := strings.TrimSuffix(store, path)
		if path, err = filepath.Abs(path); err != nil {
			return nil, err
		}
		store = prefix + path
	}
	env := []string{
		config.EnvName("state-dir") + "=" + stateDir,
		config.EnvName("token-auth-file") + "=" + tokens,
		config.EnvName("store") + "=" + store,
		config.EnvName("keys") + "=" + cfg.Keys,
		config.EnvName("auth") + "=" + cfg.Auth,
		config.EnvName("admin-project") + "=" + cfg.AdminProject, // "" is meaningful: system admins only
		config.EnvName("log-level") + "=" + cfg.LogLevel,
		config.EnvName("log-format") + "=" + cfg.LogFormat,
	}
	for k, v := range map[string]string{"os-cloud": cfg.OSCloud, "auth-cache-ttl": cfg.AuthCacheTTL.String(), "public-url": cfg.PublicURL} {
		if v != "" {
			env = append(env, config.EnvName(k)+"="+v)
		}
	}
	// Every custody backend's settings pass through (validatebundle reads
	// --barbican-endpoint too), as do the variables they read, such as a
	// PIN or a master key, which never go on a command line.
	settings := cfg.Values()
	for _, b := range config.CustodyBackends() {
		for _, k := range b.Flags {
			v := settings[k]
			if strings.HasSuffix(k, "-file") {
				if v, err = abs(v); err != nil {
					return nil, err
				}
			}
			if v != "" {
				env = append(env, config.EnvName(k)+"="+v)
			}
		}
		for _, k := range b.Environ {
			if v, ok := os.LookupEnv(k); ok {
				env = append(env, k+"="+v)
			}
		}
	}
	// OpenStack service credentials (clouds.yaml location, OS_* settings).
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "OS_") {
			env = append(env, kv)
		}
	}
	return env, nil
}
