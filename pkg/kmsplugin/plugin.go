package kmsplugin

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/kms/pkg/service"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// AAD is the associated data every KMS ciphertext is bound to. It differs
// from anything a client of the HTTP wrap route would choose by accident, so
// a KMS ciphertext cannot be unwrapped as some other context.
const AAD = "clusterkeys kms v2"

// aad is AAD as bytes, made once: the conversion would allocate on every
// call. Envelope implementations only read it.
var aad = []byte(AAD)

// APIVersion is the version the Status RPC reports; kube-apiserver requires "v2".
const APIVersion = "v2"

// HealthzOK is the healthz value of a healthy Status.
const HealthzOK = "ok"

// Limits kube-apiserver enforces on a KMS v2 plugin's answers.
const (
	// MaxKeyIDSize is the largest key_id kube-apiserver accepts.
	MaxKeyIDSize = 1024
	// MaxCiphertextSize is the largest ciphertext kube-apiserver accepts.
	MaxCiphertextSize = 1024
	// MaxAnnotationsSize is the largest total size of annotation keys and
	// values kube-apiserver accepts.
	MaxAnnotationsSize = 32 * 1024
	// MaxPlaintextSize is the largest plaintext Encrypt takes.
	// kube-apiserver sends a 32-byte seed (or a 32-byte DEK without the
	// KDF); anything much larger is not KMS v2 traffic and could not fit in
	// MaxCiphertextSize anyway.
	MaxPlaintextSize = 512
)

// DefaultStatusTTL is how long a healthy Status round trip is reused.
const DefaultStatusTTL = 5 * time.Second

// DefaultProbeTimeout bounds Status's custody round trip. It is below
// kube-apiserver's default KMS call timeout (3 s), so that kube-apiserver
// receives the shim's reason rather than its own deadline.
const DefaultProbeTimeout = 2 * time.Second

// Envelope is the part of the wrap/unwrap service (pkg/keywrap.Service) the
// Plugin uses. The ciphertext Wrap returns names the KEK version it was made
// with; Unwrap finds that version from the ciphertext alone.
type Envelope interface {
	// Wrap encrypts plaintext under the active version of the KEK name,
	// binding aad, and returns the version used.
	Wrap(ctx context.Context, name string, plaintext, aad []byte) ([]byte, store.KEKVersion, error)
	// Unwrap decrypts what Wrap returned, with the version the ciphertext
	// names, and returns that version.
	Unwrap(ctx context.Context, name string, ciphertext, aad []byte) ([]byte, store.KEKVersion, error)
}

// KeyCreator creates a KEK when it does not exist yet (pkg/keywrap.Service).
type KeyCreator interface {
	// Create creates the KEK name owned by project; created is false when it
	// already existed.
	Create(ctx context.Context, name, project string) (store.KEK, store.KEKVersion, bool, error)
}

// EnsureKey creates the KEK name (owned by project) when it is absent and
// returns its active version's key id.
func EnsureKey(ctx context.Context, c KeyCreator, name, project string) (keyID string, created bool, err error) {
	_, v, created, err := c.Create(ctx, name, project)
	if err != nil {
		return "", false, fmt.Errorf("ensure KEK %q: %w", name, err)
	}
	return v.KeyID, created, nil
}

// Config configures a Plugin.
type Config struct {
	// KeyName is the KEK every Encrypt uses. Required.
	KeyName string
	// StatusTTL is how long a healthy Status is reused (DefaultStatusTTL
	// when zero; negative disables caching).
	StatusTTL time.Duration
	// ProbeTimeout bounds the custody round trip of Status
	// (DefaultProbeTimeout when zero). A custody that does not answer in
	// time (a hung HSM) is reported unhealthy at once, and no second probe
	// starts while the stuck one runs.
	ProbeTimeout time.Duration
	// Metrics, when set, records every operation.
	Metrics *Metrics
	// Logger receives operational events (never key material); discarded
	// when nil.
	Logger *slog.Logger
	// Now returns the current time (time.Now when nil).
	Now func() time.Time
}

// Plugin implements the KMS v2 service on top of an Envelope, bound to one KEK.
type Plugin struct {
	env     Envelope
	key     string
	ttl     time.Duration
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time

	probeTimeout time.Duration

	mu         sync.Mutex
	healthyAt  time.Time // zero: no cached healthy status
	statusResp service.StatusResponse
	wasHealthy bool
	checked    bool
	probe      *probeCall // the round trip in flight, nil when none
}

// probeCall is one custody round trip of Status, shared by every Status
// call that arrives while it runs.
type probeCall struct {
	started time.Time // real time, for the timeout
	done    chan struct{}
	keyID   string // set before done is closed
	err     error
}

var _ service.Service = (*Plugin)(nil)

// New returns a Plugin wrapping under cfg.KeyName through env.
func New(env Envelope, cfg Config) (*Plugin, error) {
	if env == nil {
		return nil, errors.New("kmsplugin: nil envelope")
	}
	if cfg.KeyName == "" {
		return nil, errors.New("kmsplugin: a KEK name is required")
	}
	p := &Plugin{env: env, key: cfg.KeyName, ttl: cfg.StatusTTL, probeTimeout: cfg.ProbeTimeout, metrics: cfg.Metrics, log: cfg.Logger, now: cfg.Now}
	if p.ttl == 0 {
		p.ttl = DefaultStatusTTL
	}
	if p.probeTimeout <= 0 {
		p.probeTimeout = DefaultProbeTimeout
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p, nil
}

// KeyName returns the KEK the Plugin is bound to.
func (p *Plugin) KeyName() string { return p.key }

// Encrypt wraps data with the active KEK version; the response's KeyID names
// that version.
func (p *Plugin) Encrypt(ctx context.Context, uid string, data []byte) (_ *service.EncryptResponse, err error) {
	defer p.observe("encrypt", p.now(), &err)
	if len(data) == 0 {
		return nil, status.Error(codes.InvalidArgument, "encrypt: empty plaintext")
	}
	if len(data) > MaxPlaintextSize {
		return nil, status.Errorf(codes.InvalidArgument, "encrypt: plaintext of %d bytes exceeds %d (KMS v2 encrypts a 32-byte seed)", len(data), MaxPlaintextSize)
	}
	ct, v, err := p.env.Wrap(ctx, p.key, data, aad)
	if err != nil {
		p.forgetHealthy(err)
		return nil, p.rpcError(ctx, "encrypt", uid, err)
	}
	resp := &service.EncryptResponse{Ciphertext: ct, KeyID: v.KeyID}
	if err := CheckEncryptResponse(resp); err != nil {
		p.log.ErrorContext(ctx, "kms encrypt answer exceeds kube-apiserver limits", "uid", uid, "key", p.key, "version", v.Version, "err", err)
		return nil, status.Error(codes.Internal, "encrypt: "+err.Error())
	}
	return resp, nil
}

// Decrypt unwraps req.Ciphertext with the KEK version it names. The request's
// KeyID must be that version's key id: it is checked, never used to choose
// the key.
func (p *Plugin) Decrypt(ctx context.Context, uid string, req *service.DecryptRequest) (_ []byte, err error) {
	defer p.observe("decrypt", p.now(), &err)
	if req == nil || len(req.Ciphertext) == 0 {
		return nil, status.Error(codes.InvalidArgument, "decrypt: empty ciphertext")
	}
	if len(req.Ciphertext) > MaxCiphertextSize {
		return nil, status.Errorf(codes.InvalidArgument, "decrypt: ciphertext of %d bytes exceeds %d", len(req.Ciphertext), MaxCiphertextSize)
	}
	if len(req.KeyID) > MaxKeyIDSize {
		return nil, status.Errorf(codes.InvalidArgument, "decrypt: key_id of %d bytes exceeds %d", len(req.KeyID), MaxKeyIDSize)
	}
	pt, v, err := p.env.Unwrap(ctx, p.key, req.Ciphertext, aad)
	if err != nil {
		p.forgetHealthy(err)
		return nil, p.rpcError(ctx, "decrypt", uid, err)
	}
	if req.KeyID != v.KeyID {
		clear(pt)
		p.log.WarnContext(ctx, "kms decrypt: key_id does not name the ciphertext's KEK version", "uid", uid, "key", p.key, "version", v.Version)
		return nil, status.Error(codes.InvalidArgument, "decrypt: key_id does not match the key version the ciphertext names")
	}
	return pt, nil
}

// Status reports healthz "ok" and the active key id after a real wrap and
// unwrap round trip, reusing a healthy answer for the StatusTTL. When the
// round trip fails, or does not finish within the ProbeTimeout, Status
// returns an error. One round trip runs at a time: calls that arrive while
// it runs wait for it, so a hung custody holds one goroutine, not one per
// call.
func (p *Plugin) Status(ctx context.Context) (_ *service.StatusResponse, err error) {
	start := p.now()
	p.mu.Lock()
	if !p.healthyAt.IsZero() && p.ttl > 0 && start.Sub(p.healthyAt) < p.ttl {
		r := p.statusResp
		p.mu.Unlock()
		return &r, nil
	}
	call := p.probe
	if call == nil {
		call = &probeCall{started: time.Now(), done: make(chan struct{})}
		p.probe = call
		go p.runProbe(call)
	}
	p.mu.Unlock()
	defer p.observe("status", start, &err)

	timer := time.NewTimer(p.probeTimeout - time.Since(call.started))
	defer timer.Stop()
	select {
	case <-call.done:
		if call.err != nil {
			return nil, p.rpcError(ctx, "status", "", call.err)
		}
		p.mu.Lock()
		r := p.statusResp
		p.mu.Unlock()
		r.KeyID = call.keyID
		return &r, nil
	case <-timer.C:
		err := fmt.Errorf("custody has not answered the health probe for %v: %w",
			time.Since(call.started).Round(time.Millisecond), api.ErrUnavailable)
		p.mu.Lock()
		p.markUnhealthy(err)
		p.mu.Unlock()
		return nil, p.rpcError(ctx, "status", "", err)
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// runProbe makes call's round trip and records its outcome, even when every
// caller has stopped waiting: a custody that answers late turns healthy then.
func (p *Plugin) runProbe(call *probeCall) {
	ctx, cancel := context.WithTimeout(context.Background(), p.probeTimeout)
	defer cancel()
	keyID, err := p.roundTrip(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.markUnhealthy(err)
	} else {
		if !p.wasHealthy && p.checked {
			p.log.Info("kms status: custody healthy again", "key", p.key, "key_id", keyID)
			if p.metrics != nil {
				p.metrics.recoveries.Inc()
			}
		}
		p.setHealthy(true)
		p.healthyAt = p.now()
		p.statusResp = service.StatusResponse{Version: APIVersion, Healthz: HealthzOK, KeyID: keyID}
	}
	call.keyID, call.err = keyID, err
	p.probe = nil
	close(call.done)
}

// markUnhealthy records a failed or stuck probe, logging the transition
// once. p.mu must be held.
func (p *Plugin) markUnhealthy(err error) {
	p.healthyAt = time.Time{}
	if p.wasHealthy || !p.checked {
		p.log.Error("kms status: custody round trip failed; reporting unhealthy", "key", p.key, "err", err)
	}
	p.setHealthy(false)
}

func (p *Plugin) setHealthy(ok bool) {
	p.wasHealthy, p.checked = ok, true
	if p.metrics != nil {
		if ok {
			p.metrics.healthy.Set(1)
		} else {
			p.metrics.healthy.Set(0)
		}
	}
}

// roundTrip wraps and unwraps a random value and returns the key id of the
// version used.
func (p *Plugin) roundTrip(ctx context.Context) (string, error) {
	probe := make([]byte, 32)
	if _, err := rand.Read(probe); err != nil {
		return "", fmt.Errorf("status probe: %w", err)
	}
	ct, v, err := p.env.Wrap(ctx, p.key, probe, []byte(AAD))
	if err != nil {
		return "", fmt.Errorf("status probe wrap: %w", err)
	}
	pt, v2, err := p.env.Unwrap(ctx, p.key, ct, []byte(AAD))
	if err != nil {
		return "", fmt.Errorf("status probe unwrap: %w", err)
	}
	if !bytes.Equal(pt, probe) {
		return "", errors.New("status probe: unwrap returned other bytes than were wrapped")
	}
	if v2.KeyID != v.KeyID {
		return "", errors.New("status probe: unwrap named another key version than wrap")
	}
	if err := CheckEncryptResponse(&service.EncryptResponse{Ciphertext: ct, KeyID: v.KeyID}); err != nil {
		return "", fmt.Errorf("status probe: %w", err)
	}
	return v.KeyID, nil
}

// forgetHealthy drops a cached healthy Status when an operation found
// custody unavailable, so that the next Status checks for real.
func (p *Plugin) forgetHealthy(err error) {
	if !errors.Is(err, api.ErrUnavailable) {
		return
	}
	p.mu.Lock()
	p.healthyAt = time.Time{}
	p.mu.Unlock()
}

// rpcError logs err (which may name backend details but never key material)
// and returns the gRPC status error kube-apiserver sees.
func (p *Plugin) rpcError(ctx context.Context, op, uid string, err error) error {
	e := api.ErrorFor(err)
	code := grpcCode(e.Status)
	p.log.ErrorContext(ctx, "kms "+op+" failed", "uid", uid, "key", p.key, "code", e.Code, "err", err)
	return status.Errorf(code, "%s: %s: %s", op, e.Code, e.Detail)
}

func grpcCode(httpStatus int) codes.Code {
	switch {
	case httpStatus == 400 || httpStatus == 413:
		return codes.InvalidArgument
	case httpStatus == 404:
		return codes.NotFound
	case httpStatus == 403 || httpStatus == 401:
		return codes.PermissionDenied
	case httpStatus == 409:
		return codes.FailedPrecondition
	case httpStatus == 502 || httpStatus == 503:
		return codes.Unavailable
	}
	return codes.Internal
}

func (p *Plugin) observe(op string, start time.Time, err *error) {
	if p.metrics == nil {
		return
	}
	p.metrics.observe(op, p.now().Sub(start), *err)
}
