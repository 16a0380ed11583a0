package kmsplugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
)

// DefaultListen is the socket the shim serves on unless told otherwise; the
// static Pod manifest and EncryptionConfiguration in infra/kmsshim use it.
const DefaultListen = "unix:///var/run/clusterkeys/kms.sock"

// DefaultKeyName is the KEK the shim uses unless told otherwise.
const DefaultKeyName = "kubernetes-kms"

// DefaultKeyProject owns the KEK the shim creates unless told otherwise. It
// begins with auth.ReservedPrefix, which no token-file line may carry and
// no Keystone project id contains, so through the gateway only a global
// admin can use the KEK that wraps kube-apiserver's seeds.
const DefaultKeyProject = auth.ReservedPrefix + "kms"

// DefaultRefreshInterval is the shim's default RefreshInterval.
const DefaultRefreshInterval = 5 * time.Second

// MaxRefreshInterval bounds RefreshInterval: kube-apiserver polls Status
// every 60 s, and a rotation must reach it within a poll or two.
const MaxRefreshInterval = 60 * time.Second

// Options are the shim's own settings; custody and store settings are
// pkg/config's.
type Options struct {
	// Listen is the socket, unix:///path.sock.
	Listen string
	// Key is the KEK name, created when absent.
	Key string
	// KeyProject owns the KEK when the shim creates it
	// (DefaultKeyProject): the project whose members may also use the KEK
	// through the gateway.
	KeyProject string
	// MetricsListen, when set, is a TCP address serving /metrics.
	MetricsListen string
	// StatusTTL is how long a healthy Status is reused.
	StatusTTL time.Duration
	// RefreshInterval is how long the shim reuses the KEK's active version
	// it read from the store (pkg/keywrap Options.ActiveTTL): a rotation
	// made by another instance (the gateway, or the shim of another node)
	// is used by Encrypt and reported by Status within RefreshInterval +
	// StatusTTL. DefaultRefreshInterval when 0, at most MaxRefreshInterval.
	RefreshInterval time.Duration
	// StatusTimeout bounds Status's custody round trip.
	StatusTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown.
	ShutdownTimeout time.Duration
	// Registry collects the shim's metrics and is served on MetricsListen;
	// pass the one the backends registered with. Run creates one (with Go
	// and process collectors) when nil.
	Registry *metrics.Registry
}

// DefaultOptions returns the shim's defaults.
func DefaultOptions() Options {
	return Options{
		Listen:          DefaultListen,
		Key:             DefaultKeyName,
		KeyProject:      DefaultKeyProject,
		StatusTTL:       DefaultStatusTTL,
		RefreshInterval: DefaultRefreshInterval,
		StatusTimeout:   DefaultProbeTimeout,
		ShutdownTimeout: 10 * time.Second,
	}
}

// BindFlags registers o's fields, except Listen (pkg/config owns --listen),
// as flags on fs with o's values as defaults.
func (o *Options) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Key, "key", o.Key, "name of the KEK that wraps kube-apiserver's seeds (created when absent)")
	fs.StringVar(&o.KeyProject, "key-project", o.KeyProject, "project that owns the KEK when the shim creates it: its members (and global admins) may wrap and unwrap with it through the gateway; the default is reserved, so only global admins can")
	fs.StringVar(&o.MetricsListen, "metrics-listen", o.MetricsListen, "TCP address to serve Prometheus /metrics on, e.g. 127.0.0.1:9464 (off when empty)")
	fs.DurationVar(&o.StatusTTL, "status-cache", o.StatusTTL, "how long a healthy Status round trip is reused")
	fs.DurationVar(&o.RefreshInterval, "refresh-interval", o.RefreshInterval, "how long the KEK's active version read from the store is reused: a rotation made elsewhere (the gateway, another node's shim) is used within this plus --status-cache (at most 60s)")
	fs.DurationVar(&o.StatusTimeout, "status-timeout", o.StatusTimeout, "how long Status waits for custody's round trip before reporting unhealthy (keep it below kube-apiserver's KMS timeout, 3s by default)")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout, "how long SIGTERM waits for pending calls")
}

// Validate checks the options that have bounds.
func (o Options) Validate() error {
	if o.RefreshInterval < 0 || o.RefreshInterval > MaxRefreshInterval {
		return fmt.Errorf("--refresh-interval %v: want at most %v (0 for the default, %v)", o.RefreshInterval, MaxRefreshInterval, DefaultRefreshInterval)
	}
	return nil
}

// refreshInterval is RefreshInterval with its default applied.
func (o Options) refreshInterval() time.Duration {
	if o.RefreshInterval <= 0 {
		return DefaultRefreshInterval
	}
	return o.RefreshInterval
}

// kekCacher is key custody that can keep the KEKs it opens for a while
// instead of reading them from the store on every call (pkg/keys/software).
type kekCacher interface {
	// CacheKEKs keeps opened KEKs for up to ttl.
	CacheKEKs(ttl time.Duration)
}

// CacheKEKs turns on custody's KEK cache, when it has one, for as long as
// the shim reuses the KEK's active version (RefreshInterval): a change made
// by another instance is then seen within the same bound as a rotation.
// Without it, software custody reads and opens the KEK's blob from the store
// on every Encrypt and Decrypt. It reports whether custody has a cache.
func (o Options) CacheKEKs(custody any) bool {
	c, ok := custody.(kekCacher)
	if ok {
		c.CacheKEKs(o.refreshInterval())
	}
	return ok
}

// Backend is what the shim needs of the wrap/unwrap service.
type Backend interface {
	Envelope
	KeyCreator
}

// Run ensures the KEK exists, serves the KMS v2 API on o.Listen (and
// metrics on o.MetricsListen) until ctx ends, then shuts down gracefully.
// ready, when not nil, is called once the socket accepts connections.
func Run(ctx context.Context, o Options, b Backend, log *slog.Logger, ready func(*Server)) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := o.Validate(); err != nil {
		return err
	}
	keyID, created, err := ensureOwnedKey(ctx, b, o.Key, o.KeyProject, log)
	if err != nil {
		return err
	}
	log.Info("kms key", "key", o.Key, "key_id", keyID, "created", created, "refresh_interval", o.RefreshInterval.String())

	reg := o.Registry
	if reg == nil {
		reg = NewRegistry()
	}
	m, err := NewMetrics(reg)
	if err != nil {
		return err
	}
	p, err := New(b, Config{KeyName: o.Key, StatusTTL: o.StatusTTL, ProbeTimeout: o.StatusTimeout, Metrics: m, Logger: log})
	if err != nil {
		return err
	}
	srv, err := Listen(o.Listen, p, ServerOptions{Metrics: m, Logger: log})
	if err != nil {
		return err
	}
	if o.MetricsListen != "" {
		health := func(ctx context.Context) error { _, err := p.Status(ctx); return err }
		addr, stop, err := ServeMetrics(ctx, o.MetricsListen, reg, health)
		if err != nil {
			srv.Close()
			return err
		}
		log.Info("kms metrics serving", "addr", addr.String())
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			_ = stop(sctx)
		}()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	if ready != nil {
		ready(srv)
	}
	select {
	case err := <-errc:
		srv.Close()
		if err == nil {
			err = errors.New("kms server stopped unexpectedly")
		}
		return err
	case <-ctx.Done():
	}
	log.Info("kms plugin shutting down", "socket", srv.Path())
	timeout := o.ShutdownTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("kms plugin: %w", err)
	}
	if err := <-errc; err != nil {
		return err
	}
	return nil
}

// projectReader says which project owns a KEK (pkg/keywrap.Service).
type projectReader interface {
	Project(ctx context.Context, name string) (string, error)
}

// ensureOwnedKey is EnsureKey for the shim. A KEK that exists in another
// project than project is used only when it belongs to nobody (project "":
// created by a shim before --key-project had a default), which through the
// gateway only global admins can use; its owner is left as it is. A KEK of
// any other project is refused: that project's members could unwrap through
// the gateway every seed the shim wraps.
func ensureOwnedKey(ctx context.Context, b Backend, name, project string, log *slog.Logger) (keyID string, created bool, err error) {
	keyID, created, err = EnsureKey(ctx, b, name, project)
	if err == nil || !errors.Is(err, api.ErrConflict) {
		return keyID, created, err
	}
	pr, ok := b.(projectReader)
	if !ok {
		return "", false, err
	}
	owner, perr := pr.Project(ctx, name)
	if perr != nil {
		return "", false, fmt.Errorf("ensure KEK %q: read its project: %w", name, perr)
	}
	if owner != "" {
		return "", false, fmt.Errorf("KEK %q belongs to project %q, not to --key-project %q: its members could unwrap kube-apiserver's seeds; use another --key or that --key-project: %w", name, owner, project, err)
	}
	log.Warn("kms key belongs to no project (created before --key-project had a default); only global admins can use it through the gateway",
		"key", name, "key_project", project)
	return EnsureKey(ctx, b, name, "")
}

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors, for the shim's /metrics.
func NewRegistry() *metrics.Registry {
	return metrics.NewProcessRegistry()
}
