// Package gateway routes requests to the functions' handlers and applies
// what every route shares: request ids, panic recovery, body limits,
// in-flight limits, throttling of failed authentications per client
// address, authentication, error bodies (RFC 9457 problem+json, or the format a
// route names, such as Magnum's), structured logs and Prometheus metrics.
// It also serves the operational endpoints /healthz, /readyz, /metrics and
// /openapi.json (the API's OpenAPI document, pkg/api/openapi).
//
// The gateway knows nothing of the functions' domains: each function
// publishes its []api.Route and the gateway serves them. The same handler
// serves AWS Lambda (through pkg/lambdahttp), localrun and tests.
package gateway

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/api/openapi"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	promreg "github.com/clusterkeys/clusterkeys/pkg/metrics"
)

// Config is what the gateway needs besides the routes.
type Config struct {
	// Auth authenticates bearer tokens. Required when any route is not public.
	Auth auth.Authenticator
	// Logger receives one line per request; nil discards.
	Logger *slog.Logger
	// Registry receives the gateway's metrics and is served on /metrics;
	// nil gives a fresh registry.
	Registry *promreg.Registry
	// Ready reports whether the backends (store, custody) are reachable, for
	// /readyz; nil means always ready.
	Ready func(ctx context.Context) error
	// ReadyTimeout bounds how long /readyz waits for Ready, so that a hung
	// backend (an HSM that stopped answering) shows as not ready within it
	// instead of hanging the probe; 0 means DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Timeout bounds each request's context; 0 means 30 s.
	Timeout time.Duration
	// Limits bound concurrent work and failed authentications; nil means
	// DefaultLimits().
	Limits *Limits
	// Now is the throttle's clock; nil means time.Now.
	Now func() time.Time
}

// DefaultReadyTimeout bounds how long /readyz waits for the backends, a
// backstop so that probes of a backend that never answers do not pile up.
// It is generous on purpose: Barbican behind keystonemiddleware on a loaded
// host takes many seconds, and probes that give up and retry only queue more
// work on it. A hung PKCS#11 token shows at once, through its stuck calls.
const DefaultReadyTimeout = 30 * time.Second

// Gateway is an http.Handler serving the routes it was built with.
type Gateway struct {
	mux     *http.ServeMux
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	// inFlight is the instance-wide limit, routeInFlight the per-route
	// ones; throttle counts failed authentications. Each is nil when off.
	inFlight      *inFlight
	routeInFlight map[string]*inFlight
	throttle      *authThrottle
	// prefixes are the routes' literal path prefixes and error formats,
	// from which an unmatched request's error format is chosen.
	prefixes []routePrefix
}

// routePrefix is a route's path up to its first wildcard, and its error
// format.
type routePrefix struct {
	path   string
	format api.ErrorFormat
}

var _ http.Handler = (*Gateway)(nil)

// New returns a gateway serving routes plus the operational endpoints.
func New(cfg Config, routes ...api.Route) (*Gateway, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = promreg.NewRegistry()
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	g := &Gateway{mux: http.NewServeMux(), cfg: cfg, log: cfg.Logger, metrics: m}
	if err := g.setLimits(cfg); err != nil {
		return nil, err
	}
	ops := g.opsRoutes()
	all := append(ops, routes...)
	for i, rt := range all {
		if rt.Handler == nil || rt.Pattern == "" {
			return nil, fmt.Errorf("gateway: route %q has no handler or pattern", rt.Name)
		}
		if !rt.Public && cfg.Auth == nil {
			return nil, fmt.Errorf("gateway: route %q needs authentication but no authenticator is configured", rt.Name)
		}
		if err := register(g.mux, rt.Pattern, g.wrap(rt, i < len(ops))); err != nil {
			return nil, err
		}
		g.prefixes = append(g.prefixes, literalPrefix(rt))
	}
	return g, nil
}

// setLimits builds the limiters cfg.Limits asks for.
func (g *Gateway) setLimits(cfg Config) error {
	l := DefaultLimits()
	if cfg.Limits != nil {
		l = *cfg.Limits
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if l.MaxInFlight > 0 {
		g.inFlight = &inFlight{limit: int64(l.MaxInFlight), gauge: g.metrics.inFlight.WithLabelValues("all")}
	}
	g.routeInFlight = map[string]*inFlight{}
	for name, n := range l.RouteMaxInFlight {
		if n > 0 {
			g.routeInFlight[name] = &inFlight{limit: int64(n), gauge: g.metrics.inFlight.WithLabelValues(name)}
		}
	}
	t, err := newAuthThrottle(l, cfg.Now)
	if err != nil {
		return fmt.Errorf("gateway: auth throttle: %w", err)
	}
	g.throttle = t
	return nil
}

// register adds a pattern, turning ServeMux's panic on a conflicting or
// malformed pattern into an error.
func register(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("gateway: route %q: %v", pattern, r)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// ServeHTTP routes r. Unknown paths get 404 and known paths with another
// method 405 with an Allow header, both in the API's error format.
//
// The mux is asked once: it runs the matched route's handler (which marks
// the dispatchWriter as matched and writes to the real writer) or its own
// 404/405 answer, which the dispatchWriter keeps to itself and which is
// then said in our format. Redirects the mux answers (a cleaned path) pass
// through.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d := &dispatchWriter{w: w}
	g.mux.ServeHTTP(d, r)
	if d.matched || d.passed {
		return
	}
	rid := requestID(r)
	w.Header().Set("X-Request-Id", rid)
	format := g.unmatchedFormat(r.URL.Path)
	var e *api.Error
	if d.status == http.StatusMethodNotAllowed {
		allow := d.Header().Get("Allow")
		w.Header().Set("Allow", allow)
		e = api.New(http.StatusMethodNotAllowed, api.CodeMethodNotAllowed,
			fmt.Sprintf("method %s is not allowed here; allowed: %s", r.Method, allow))
	} else {
		e = api.New(http.StatusNotFound, api.CodeNotFound, "no such route")
	}
	api.WriteError(w, format, rid, e)
	g.metrics.observe("unmatched", e.Status, 0)
}

// dispatchWriter is what ServeHTTP hands the mux. A route's handler
// (wrap) takes the real writer out of it and marks it matched; anything
// else the mux runs writes into it: a 404 or 405 is kept (status and
// headers, for ServeHTTP to answer in the API's format), any other answer
// (a redirect) is passed through to the real writer.
type dispatchWriter struct {
	w       http.ResponseWriter
	header  http.Header
	status  int
	matched bool
	passed  bool
}

func (d *dispatchWriter) Header() http.Header {
	if d.passed {
		return d.w.Header()
	}
	if d.header == nil {
		d.header = http.Header{}
	}
	return d.header
}

func (d *dispatchWriter) WriteHeader(code int) {
	if d.passed || d.status != 0 {
		if d.passed {
			d.w.WriteHeader(code)
		}
		return
	}
	if code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
		d.status = code
		return
	}
	d.passed = true
	maps.Copy(d.w.Header(), d.header)
	d.w.WriteHeader(code)
}

func (d *dispatchWriter) Write(b []byte) (int, error) {
	if d.status == 0 && !d.passed {
		d.WriteHeader(http.StatusOK)
	}
	if d.passed {
		return d.w.Write(b)
	}
	return len(b), nil
}

// routeWriter returns the writer a route's handler writes to: the real
// one when w came from ServeHTTP (marked matched), else w itself (the
// handler was called some other way).
func routeWriter(w http.ResponseWriter) http.ResponseWriter {
	if d, ok := w.(*dispatchWriter); ok {
		d.matched = true
		return d.w
	}
	return w
}

// literalPrefix is rt's path up to its first wildcard: "GET
// /v1/certificates/{cluster}" gives "/v1/certificates/".
func literalPrefix(rt api.Route) routePrefix {
	path := rt.Pattern
	if _, p, ok := strings.Cut(path, " "); ok {
		path = strings.TrimLeft(p, " \t")
	}
	path, _, _ = strings.Cut(path, "{")
	return routePrefix{path: path, format: rt.Format}
}

// unmatchedFormat is the error format of a request no route matches (404,
// 405): that of the routes whose literal prefix is the longest prefix of
// path, when they all agree, and problem+json otherwise. The routes carry
// their format; the gateway knows no API's paths.
func (g *Gateway) unmatchedFormat(path string) api.ErrorFormat {
	best, format, agree := -1, api.ProblemJSON, true
	for _, p := range g.prefixes {
		if !strings.HasPrefix(path, p.path) {
			continue
		}
		switch n := len(p.path); {
		case n > best:
			best, format, agree = n, p.format, true
		case n == best && p.format != format:
			agree = false
		}
	}
	if !agree {
		return api.ProblemJSON
	}
	return format
}

// wrap applies the shared middleware to one route. Operational routes
// (ops) are exempt from the in-flight limits.
func (g *Gateway) wrap(rt api.Route, ops bool) http.Handler {
	limit := rt.MaxBody
	if limit == 0 {
		limit = api.DefaultMaxBody
	}
	global := g.inFlight
	if ops {
		global = nil
	}
	route := g.routeInFlight[rt.Name]
	if ops {
		route = nil
	}
	rm := g.metrics.route(rt.Name)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w = routeWriter(w)
		rid := requestID(r)
		w.Header().Set("X-Request-Id", rid)
		rw := &responseWriter{ResponseWriter: w}
		ctx, cancel := context.WithTimeout(r.Context(), g.cfg.Timeout)
		defer cancel()
		ctx = withRequestID(ctx, rid)

		var user string
		err := func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					// The panic value may hold request data: log its type
					// and the stack, never its text.
					g.log.Error("panic in handler", "route", rt.Name, "request_id", rid,
						"panic_type", fmt.Sprintf("%T", p), "stack", string(debug.Stack()))
					err = fmt.Errorf("panic in handler %s", rt.Name)
				}
			}()
			var addr string
			if !rt.Public && g.throttle != nil {
				addr = clientAddr(r)
				if err := g.throttle.check(addr); err != nil {
					g.metrics.rejected.WithLabelValues("auth_throttled").Inc()
					return err
				}
			}
			if global != nil {
				if err := global.acquire(); err != nil {
					g.metrics.rejected.WithLabelValues("in_flight").Inc()
					return err
				}
				defer global.release()
			}
			if r.ContentLength > limit {
				return api.New(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge,
					fmt.Sprintf("request body exceeds %d bytes", limit))
			}
			body := http.MaxBytesReader(rw, r.Body, limit)
			hctx := ctx
			if !rt.Public {
				p, token, err := g.authenticate(ctx, r)
				if err != nil {
					if g.throttle != nil && api.ErrorFor(err).Status == http.StatusUnauthorized {
						g.throttle.fail(addr)
					}
					return err
				}
				user = p.User
				hctx = auth.WithToken(auth.WithPrincipal(ctx, p), token)
			}
			if route != nil {
				if err := route.acquire(); err != nil {
					g.metrics.rejected.WithLabelValues("in_flight_" + rt.Name).Inc()
					return err
				}
				defer route.release()
			}
			// r is copied once, with its final context, just before the
			// route's handler runs (r.WithContext copies the whole request).
			req := r.WithContext(hctx)
			req.Body = body
			return rt.Handler(rw, req)
		}()
		if err != nil {
			if rw.wrote {
				g.log.Error("handler failed after writing a response", "route", rt.Name, "request_id", rid, "err", err)
			} else {
				e := api.ErrorFor(err)
				if e.Status == http.StatusUnauthorized {
					rw.Header().Set("WWW-Authenticate", `Bearer realm="clusterkeys"`)
				}
				api.WriteError(rw, rt.Format, rid, e)
				level := slog.LevelInfo
				if e.Status >= 500 {
					level = slog.LevelError
				}
				g.log.Log(ctx, level, "request failed", "route", rt.Name, "request_id", rid,
					"status", e.Status, "code", e.Code, "user", user, "err", err)
			}
		}
		status := rw.status
		if status == 0 {
			status = http.StatusOK
		}
		now := time.Now()
		elapsed := now.Sub(start)
		rm.observe(status, elapsed)
		if h := g.log.Handler(); !rt.Public && h.Enabled(ctx, slog.LevelInfo) {
			// The record is handed to the handler directly: behind
			// Enabled, nothing is built for a level that is off, and the
			// line carries no source location, so the caller's program
			// counter (runtime.Callers, which Logger.LogAttrs always takes)
			// is not looked up; it would name this function on every line.
			rec := slog.NewRecord(now, slog.LevelInfo, "request", 0)
			rec.AddAttrs(slog.String("method", r.Method), slog.String("route", rt.Name),
				slog.String("path", r.URL.Path), slog.Int("status", status),
				slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
				slog.String("request_id", rid), slog.String("user", user))
			_ = h.Handle(ctx, rec)
		}
	})
}

// authenticate reads the token from Authorization: Bearer or X-Auth-Token.
// A Bearer Authorization wins; otherwise X-Auth-Token is used, so that an
// Authorization of another scheme (Basic, added by a proxy) does not hide
// it; an Authorization of another scheme alone is refused.
func (g *Gateway) authenticate(ctx context.Context, r *http.Request) (auth.Principal, string, error) {
	var token string
	h := r.Header.Get("Authorization")
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		token = strings.TrimSpace(rest)
	case r.Header.Get("X-Auth-Token") != "":
		token = r.Header.Get("X-Auth-Token")
	case h != "":
		return auth.Principal{}, "", api.New(http.StatusUnauthorized, api.CodeUnauthorized,
			"Authorization must use the Bearer scheme")
	}
	if token == "" {
		return auth.Principal{}, "", api.New(http.StatusUnauthorized, api.CodeUnauthorized,
			"missing credentials: send Authorization: Bearer <token> or X-Auth-Token")
	}
	p, err := g.cfg.Auth.Authenticate(ctx, token)
	if err != nil {
		if errors.Is(err, api.ErrUnauthenticated) {
			return auth.Principal{}, "", api.New(http.StatusUnauthorized, api.CodeUnauthorized,
				"invalid or expired token").Wrap(err)
		}
		return auth.Principal{}, "", fmt.Errorf("authenticate: %w", err)
	}
	return p, token, nil
}

// responseWriter records whether and what a handler wrote.
type responseWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *responseWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type requestIDKey struct{}

func withRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id of ctx, or "".
func RequestID(ctx context.Context) string {
	s, _ := ctx.Value(requestIDKey{}).(string)
	return s
}

// requestID takes a client's X-Request-Id when it is short and plain, so
// that logs of a caller and of clusterkeys can be joined, else makes one.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 && plainID(id) {
		return id
	}
	return newRequestID()
}

// newRequestID makes a request id: "req-" and 24 hex digits from the
// runtime's per-thread generator (math/rand/v2, seeded from the OS). An id
// only has to be unique, not secret, so it needs neither crypto/rand's
// system call nor its buffer.
func newRequestID() string {
	var raw [12]byte
	binary.LittleEndian.PutUint64(raw[:8], rand.Uint64())
	binary.LittleEndian.PutUint32(raw[8:], rand.Uint32())
	var b [4 + 2*len(raw)]byte
	copy(b[:], "req-")
	hex.Encode(b[4:], raw[:])
	return string(b[:])
}

func plainID(s string) bool {
	for _, c := range s {
		if !(c == '-' || c == '_' || c == '.' || c == ':' ||
			'0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

func (g *Gateway) opsRoutes() []api.Route {
	metrics := promreg.Handler(g.cfg.Registry)
	return []api.Route{
		{Pattern: "GET /healthz", Name: "healthz", Public: true, Handler: func(w http.ResponseWriter, r *http.Request) error {
			return api.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		}},
		{Pattern: "GET /readyz", Name: "readyz", Public: true, Handler: func(w http.ResponseWriter, r *http.Request) error {
			if g.cfg.Ready != nil {
				ctx, cancel := context.WithTimeout(r.Context(), g.cfg.ReadyTimeout)
				defer cancel()
				if err := g.cfg.Ready(ctx); err != nil {
					return api.New(http.StatusServiceUnavailable, api.CodeBackendUnavailable,
						"not ready: a backend is unreachable").Wrap(err)
				}
			}
			return api.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		}},
		{Pattern: "GET /metrics", Name: "metrics", Public: true, Handler: func(w http.ResponseWriter, r *http.Request) error {
			metrics.ServeHTTP(w, r)
			return nil
		}},
		openapi.Route(),
	}
}

type metrics struct {
	requests *promreg.CounterVec
	latency  *promreg.HistogramVec
	inFlight *promreg.GaugeVec
	rejected *promreg.CounterVec
}

func newMetrics(reg promreg.Registerer) (*metrics, error) {
	m := &metrics{
		requests: promreg.NewCounterVec(promreg.CounterOpts{
			Namespace: "clusterkeys", Name: "http_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: promreg.NewHistogramVec(promreg.HistogramOpts{
			Namespace: "clusterkeys", Name: "http_request_duration_seconds",
			Help:    "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		inFlight: promreg.NewGaugeVec(promreg.GaugeOpts{
			Namespace: "clusterkeys", Name: "http_in_flight_requests",
			Help: "Requests being served, by limit: all (instance-wide) or a route name with its own limit.",
		}, []string{"limit"}),
		rejected: promreg.NewCounterVec(promreg.CounterOpts{
			Namespace: "clusterkeys", Name: "http_rejected_requests_total",
			Help: "Requests refused by a limit: in_flight, in_flight_<route>, or auth_throttled.",
		}, []string{"reason"}),
	}
	for _, c := range []promreg.Collector{m.requests, m.latency, m.inFlight, m.rejected} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register gateway metrics: %w", err)
		}
	}
	return m, nil
}

// routeMetrics are one route's children of the request metrics, resolved
// once: the latency histogram, and the request counter of each status code
// the route has answered (WithLabelValues hashes the label values and
// looks them up on every call).
type routeMetrics struct {
	m       *metrics
	name    string
	latency promreg.Observer
	codes   sync.Map // int → promreg.Counter
}

func (m *metrics) route(name string) *routeMetrics {
	return &routeMetrics{m: m, name: name, latency: m.latency.WithLabelValues(name)}
}

// observe counts a request answered with status after d.
func (rm *routeMetrics) observe(status int, d time.Duration) {
	c, ok := rm.codes.Load(status)
	if !ok {
		c, _ = rm.codes.LoadOrStore(status, rm.m.requests.WithLabelValues(rm.name, strconv.Itoa(status)))
	}
	c.(promreg.Counter).Inc()
	if d > 0 {
		rm.latency.Observe(d.Seconds())
	}
}

func (m *metrics) observe(route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	if d > 0 {
		m.latency.WithLabelValues(route).Observe(d.Seconds())
	}
}
