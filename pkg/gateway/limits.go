package gateway

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	promreg "github.com/clusterkeys/clusterkeys/pkg/metrics"
)

// Limits bound the work one gateway instance accepts. A zero field means
// no limit of that kind.
//
// In-flight limits reject at once (503 overloaded, Retry-After: 1) rather
// than queue: a queued request holds its connection and body in memory and
// answers late anyway, while a client told to retry can go to another
// instance. The operational routes (/healthz, /readyz, /metrics) are never
// limited, so probes and scrapes keep working under load.
type Limits struct {
	// MaxInFlight bounds the requests being served at once, on every route
	// but the operational ones.
	MaxInFlight int
	// RouteMaxInFlight bounds, per route name, the requests of that route
	// being served at once: a tighter limit for CPU-heavy routes. It is
	// checked after authentication, so unauthenticated callers never hold
	// one of these slots.
	RouteMaxInFlight map[string]int
	// MaxAuthFailures is how many failed authentications (401) one client
	// address may have in AuthFailureWindow; beyond that its requests get
	// 429 rate_limited, with Retry-After, before the token is even looked at.
	// The allowance refills steadily, one failure per
	// AuthFailureWindow/MaxAuthFailures.
	MaxAuthFailures   int
	AuthFailureWindow time.Duration
	// AuthTableSize bounds the client addresses remembered; the least
	// recently failing one is forgotten first. 0 means DefaultAuthTableSize.
	AuthTableSize int
}

// Default limits.
const (
	DefaultMaxInFlight       = 64
	DefaultMaxAuthFailures   = 20
	DefaultAuthFailureWindow = time.Minute
	DefaultAuthTableSize     = 10_000
	// ValidateRoute is the name of POST /v1/tls/validate, the one route whose
	// CPU cost an attacker chooses (key-derivation iterations).
	ValidateRoute = "tls_validate"
)

// DefaultValidateInFlight is the default in-flight limit of POST
// /v1/tls/validate: half the CPUs Go may use, at least 1, so that
// validations can never occupy every CPU and signing always finds one.
func DefaultValidateInFlight() int {
	return max(1, runtime.GOMAXPROCS(0)/2)
}

// DefaultLimits returns the limits a gateway has when Config.Limits is nil.
func DefaultLimits() Limits {
	return Limits{
		MaxInFlight:       DefaultMaxInFlight,
		RouteMaxInFlight:  map[string]int{ValidateRoute: DefaultValidateInFlight()},
		MaxAuthFailures:   DefaultMaxAuthFailures,
		AuthFailureWindow: DefaultAuthFailureWindow,
	}
}

// inFlight counts the requests of one class being served and refuses those
// beyond its limit.
type inFlight struct {
	limit int64
	n     atomic.Int64
	gauge promreg.Gauge
}

// acquire takes a slot, or returns a 503 overloaded error.
func (f *inFlight) acquire() error {
	if f.n.Add(1) > f.limit {
		f.n.Add(-1)
		e := api.New(http.StatusServiceUnavailable, api.CodeOverloaded,
			"too many requests in flight on this instance; retry later")
		e.RetryAfter = 1
		return e
	}
	f.gauge.Inc()
	return nil
}

func (f *inFlight) release() {
	f.n.Add(-1)
	f.gauge.Dec()
}

// authThrottle remembers failed authentications per client address in a
// bounded LRU table of token buckets.
type authThrottle struct {
	every rate.Limit
	burst int
	table *lru.Cache[string, *rate.Limiter]
	now   func() time.Time
}

func newAuthThrottle(l Limits, now func() time.Time) (*authThrottle, error) {
	if l.MaxAuthFailures <= 0 || l.AuthFailureWindow <= 0 {
		return nil, nil
	}
	size := l.AuthTableSize
	if size <= 0 {
		size = DefaultAuthTableSize
	}
	table, err := lru.New[string, *rate.Limiter](size)
	if err != nil {
		return nil, err
	}
	return &authThrottle{
		every: rate.Limit(float64(l.MaxAuthFailures) / l.AuthFailureWindow.Seconds()),
		burst: l.MaxAuthFailures,
		table: table,
		now:   now,
	}, nil
}

// check returns a 429 rate_limited error when addr has used up its failed
// authentications.
func (t *authThrottle) check(addr string) error {
	lim, ok := t.table.Peek(addr)
	if !ok {
		return nil
	}
	tokens := lim.TokensAt(t.now())
	if tokens >= 1 {
		return nil
	}
	wait := int(math.Ceil((1 - tokens) / float64(t.every)))
	e := api.New(http.StatusTooManyRequests, api.CodeRateLimited,
		"too many failed authentications from this address; retry later")
	e.RetryAfter = max(1, wait)
	return e
}

// fail records a failed authentication from addr.
func (t *authThrottle) fail(addr string) {
	lim, ok := t.table.Get(addr)
	if !ok {
		fresh := rate.NewLimiter(t.every, t.burst)
		prev, found, _ := t.table.PeekOrAdd(addr, fresh)
		if lim = fresh; found {
			lim = prev
		}
	}
	lim.AllowN(t.now(), 1)
}

// clientAddr is the key a client is throttled under: the IP address of the
// TCP peer (on Lambda, the event's sourceIp, which pkg/lambdahttp puts in
// RemoteAddr). An IPv6 address counts by its /64, the block one site
// usually holds. X-Forwarded-For is never read: behind a proxy every client
// shares the proxy's address.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		if len(host) > 64 {
			host = host[:64]
		}
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
