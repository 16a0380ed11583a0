// Package pkcs11 is key custody in an HSM through PKCS#11
// (github.com/ThalesGroup/crypto11). CA keys (ECDSA P-256/P-384, RSA
// 2048-4096) and KEKs (AES-256) are generated in the token as sensitive,
// non-extractable token objects; signing uses the token's signer, sealing
// uses AES-GCM in the token with a random 12-byte nonce (output
// nonce||ciphertext||tag, the same layout as software custody).
//
// # Objects
//
// Each key is found by its ref, stored as CKA_LABEL, with CKA_ID a hash of
// the ref. Labels are not unique in PKCS#11, so generation refuses a ref
// that any object carries (keys.ErrConflict), use refuses a label that names
// several keys, and Destroy deletes every object labelled ref: a key pair,
// a secret key, and the lone half a failed generation may leave behind.
//
// # Deadlines
//
// Every call into the library runs in a goroutine of its own and is waited
// for at most Options.CallTimeout (DefaultCallTimeout; key generation six
// times that), or less when the caller's context ends first; crypto.Signer's Sign, which has no context,
// gets that deadline too. A call that misses it fails with an error
// wrapping keys.ErrUnavailable while its goroutine stays inside the library
// until the library returns: such a stuck call holds no lock, so other
// callers, Check and the readiness probes go on. Check reports unhealthy
// while any stuck call has been in the library past its deadline, and at
// most Options.MaxStuckCalls may exist: beyond that, calls
// fail at once instead of leaving more goroutines behind.
//
// # Faults
//
// A crypto11 context never recovers once the token has gone away (removed,
// module finalized, session handles invalidated): its object and session
// handles stay invalid even after the token returns. So every call runs
// with panics recovered (crypto11's GCM Seal panics on any PKCS#11 error),
// and any failure is followed by a health probe, a real AES-GCM round trip
// with a dedicated health key. When the probe fails, the context is retired:
// new calls fail at once with errors wrapping keys.ErrUnavailable and Check
// reports unhealthy; the context is closed (which finalizes the module) once
// the calls still using it have returned, and a background loop then
// configures a new context with backoff and finds the keys again by label.
// Signers handed out before the fault keep working afterwards: they look
// their key up by label in the current context.
//
// Decryption does not go through crypto11, which turns C_Decrypt's error
// code into text: Open calls the module directly, so a ciphertext that does
// not authenticate is told from a token fault by its PKCS#11 return value.
//
// crypto11 shares one module instance per library path in a process and
// finalizes it only when its last context closes, so a process should keep
// at most one open Custody per module.
package pkcs11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/cipher"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/ThalesGroup/crypto11"
	p11 "github.com/miekg/pkcs11"

	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
)

// HealthKeyLabel is the label of the AES key Check and the fault probe use.
// It is created in the token on first use.
const HealthKeyLabel = "clusterkeys-health-check"

const (
	// DefaultCallTimeout bounds one call into the token when
	// Options.CallTimeout is zero.
	DefaultCallTimeout = 10 * time.Second
	// DefaultMaxStuckCalls bounds the calls still inside the library after
	// their deadline when Options.MaxStuckCalls is zero.
	DefaultMaxStuckCalls = 8
)

const (
	nonceSize         = 12
	tagSize           = 16
	defaultMinBackoff = 50 * time.Millisecond
	defaultMaxBackoff = time.Second
	poolWaitTimeout   = 10 * time.Second
	maxRefLength      = 512
	directPoolSize    = 8
	// generateFactor: key generation (RSA-4096 takes seconds even in
	// SoftHSM2) waits this many call timeouts.
	generateFactor = 6
)

// Options tunes a Custody. The zero value is usable.
type Options struct {
	// Logger logs faults and reconnections (never PINs or key material);
	// discarded when nil.
	Logger *slog.Logger
	// Registerer, when set, receives clusterkeys_pkcs11_reconnects_total,
	// clusterkeys_pkcs11_up and clusterkeys_pkcs11_stuck_calls.
	Registerer metrics.Registerer
	// MinBackoff and MaxBackoff bound the delay between reconnection
	// attempts (50 ms and 1 s when zero).
	MinBackoff, MaxBackoff time.Duration
	// CallTimeout bounds every call into the token, Open's and Sign's
	// included (DefaultCallTimeout when zero); key generation gets six
	// times as long. A call that has not returned by then fails with an
	// error wrapping keys.ErrUnavailable.
	CallTimeout time.Duration
	// MaxStuckCalls bounds the calls whose caller stopped waiting and that
	// are still inside the library (DefaultMaxStuckCalls when zero). At the
	// limit new calls fail at once with keys.ErrUnavailable.
	MaxStuckCalls int
}

// Custody keeps keys in a PKCS#11 token. It is safe for concurrent use.
type Custody struct {
	cfg         Config
	log         *slog.Logger
	minBackoff  time.Duration
	maxBackoff  time.Duration
	callTimeout time.Duration
	maxStuck    int
	reconnects  metrics.Counter
	up          metrics.Gauge
	stuckGauge  metrics.Gauge

	// genSem (capacity 1) makes "check the label is free, then generate"
	// atomic within this process. It is held by the goroutine that makes
	// the calls, so a generation that outlives its caller keeps it.
	genSem chan struct{}

	// mu guards the fields below. It is only ever held for bookkeeping,
	// never across a call into the library, so a hung token cannot block a
	// caller that only looks at the state.
	mu       sync.Mutex
	cur      *conn // nil while reconnecting or closed
	closed   bool
	stop     chan struct{}
	loopDone chan struct{}
	stuck    map[*callState]struct{} // abandoned calls still in the library
}

// conn is one crypto11 context and what was found in it. A call holds a
// reference (calls) for as long as its goroutine runs; a retired conn is
// closed when the last reference is dropped, so a context is never closed
// under a call.
type conn struct {
	cx     *crypto11.Context
	raw    *direct
	health cipher.AEAD

	calls   int  // guarded by Custody.mu
	retired bool // guarded by Custody.mu
	closed  chan struct{}

	// cacheMu guards the handles found in cx.
	cacheMu    sync.Mutex
	keks       map[string]cipher.AEAD
	kekHandles map[string]p11.ObjectHandle
	signers    map[string]crypto11.Signer
}

func (cn *conn) dropCache() {
	cn.cacheMu.Lock()
	defer cn.cacheMu.Unlock()
	clear(cn.keks)
	clear(cn.kekHandles)
	clear(cn.signers)
}

// close closes cn's sessions and context (finalizing the module when it is
// the last context on it).
func (cn *conn) close(log *slog.Logger) {
	if cn.raw != nil {
		cn.raw.closeSessions()
	}
	if err := safely(cn.cx.Close); err != nil {
		log.Warn("closing PKCS#11 context", "err", err)
	}
	if cn.raw != nil {
		cn.raw.mod.Destroy()
	}
	close(cn.closed)
}

// callState is one call's goroutine as seen by its caller.
type callState struct {
	start     time.Time
	limit     time.Duration // the call's deadline, from start
	done      chan struct{} // closed under Custody.mu once f has returned
	err       error
	abandoned bool // guarded by Custody.mu: the caller stopped waiting
}

var _ keys.Custody = (*Custody)(nil)

// Open configures the token cfg names, logs in and finds (or creates) the
// health key, within the call timeout. It fails when the token cannot be
// used now; once open, Custody survives token faults by itself.
func Open(cfg Config, opts Options) (*Custody, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("pkcs11 custody: %w", err)
	}
	c := &Custody{
		cfg:         cfg,
		log:         opts.Logger,
		minBackoff:  opts.MinBackoff,
		maxBackoff:  opts.MaxBackoff,
		callTimeout: opts.CallTimeout,
		maxStuck:    opts.MaxStuckCalls,
		genSem:      make(chan struct{}, 1),
		stop:        make(chan struct{}),
		stuck:       map[*callState]struct{}{},
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.minBackoff <= 0 {
		c.minBackoff = defaultMinBackoff
	}
	if c.maxBackoff < c.minBackoff {
		c.maxBackoff = max(defaultMaxBackoff, c.minBackoff)
	}
	if c.callTimeout <= 0 {
		c.callTimeout = DefaultCallTimeout
	}
	if c.maxStuck <= 0 {
		c.maxStuck = DefaultMaxStuckCalls
	}
	c.reconnects = metrics.NewCounter(metrics.CounterOpts{
		Name: "clusterkeys_pkcs11_reconnects_total",
		Help: "Times the PKCS#11 context was configured again after a token fault.",
	})
	c.up = metrics.NewGauge(metrics.GaugeOpts{
		Name: "clusterkeys_pkcs11_up",
		Help: "1 while the PKCS#11 token is usable, 0 while reconnecting.",
	})
	c.stuckGauge = metrics.NewGauge(metrics.GaugeOpts{
		Name: "clusterkeys_pkcs11_stuck_calls",
		Help: "PKCS#11 calls still inside the library after their caller stopped waiting.",
	})
	// A second Custody in one process shares the first one's collectors.
	c.reconnects, _ = metrics.Register(opts.Registerer, c.reconnects)
	c.up, _ = metrics.Register(opts.Registerer, c.up)
	c.stuckGauge, _ = metrics.Register(opts.Registerer, c.stuckGauge)
	cn, err := c.configureWithin(c.callTimeout)
	if err != nil {
		return nil, fmt.Errorf("pkcs11 custody: %s: %w", cfg, err)
	}
	c.cur = cn
	c.up.Set(1)
	c.stuckGauge.Set(0)
	return c, nil
}

// configureWithin is configure bounded by d. A configuration that finishes
// after d is closed again.
func (c *Custody) configureWithin(d time.Duration) (*conn, error) {
	type result struct {
		cn  *conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		cn, err := c.configure()
		ch <- result{cn, err}
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r := <-ch:
		return r.cn, r.err
	case <-timer.C:
		go func() {
			if r := <-ch; r.cn != nil {
				r.cn.close(c.log)
			}
		}()
		return nil, fmt.Errorf("the token has not answered within %v: %w", d, keys.ErrUnavailable)
	}
}

// configure makes a new crypto11 context, the direct calls' view of the
// same module, and finds or creates the health key.
func (c *Custody) configure() (*conn, error) {
	var cx *crypto11.Context
	err := safely(func() error {
		var err error
		cx, err = crypto11.Configure(&crypto11.Config{
			Path:            c.cfg.Module,
			TokenLabel:      c.cfg.TokenLabel,
			Pin:             c.cfg.PIN,
			GCMIVLength:     nonceSize,
			PoolWaitTimeout: poolWaitTimeout,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("configure token: %w", err)
	}
	cn := &conn{
		cx:         cx,
		closed:     make(chan struct{}),
		keks:       map[string]cipher.AEAD{},
		kekHandles: map[string]p11.ObjectHandle{},
		signers:    map[string]crypto11.Signer{},
	}
	err = safely(func() error {
		var err error
		if cn.raw, err = openDirect(c.cfg.Module, c.cfg.TokenLabel); err != nil {
			return err
		}
		cn.health, err = c.healthKey(cx)
		return err
	})
	if err != nil {
		cn.close(c.log)
		return nil, err
	}
	return cn, nil
}

func (c *Custody) healthKey(cx *crypto11.Context) (cipher.AEAD, error) {
	found, err := cx.FindKeys(nil, []byte(HealthKeyLabel))
	if err != nil {
		return nil, fmt.Errorf("find health key: %w", err)
	}
	var k *crypto11.SecretKey
	if len(found) > 0 {
		// Two processes may have created one each at once; any will do.
		k = found[0]
	} else {
		c.genSem <- struct{}{}
		k, err = cx.GenerateSecretKeyWithAttributes(secretTemplate(HealthKeyLabel), 256, crypto11.CipherAES)
		<-c.genSem
		if err != nil {
			return nil, fmt.Errorf("generate health key: %w", err)
		}
	}
	g, err := k.NewGCM()
	if err != nil {
		return nil, fmt.Errorf("health key GCM: %w", err)
	}
	return g, nil
}

// objectID is the CKA_ID of the key labelled ref.
func objectID(ref string) []byte {
	h := sha256.Sum256([]byte("clusterkeys/pkcs11/id\x00" + ref))
	return h[:16]
}

func idAndLabel(ref string) crypto11.AttributeSet {
	a, _ := crypto11.NewAttributeSetWithIDAndLabel(objectID(ref), []byte(ref)) // cannot fail with []byte
	return a
}

func set(a crypto11.AttributeSet, attrs map[uint]any) crypto11.AttributeSet {
	for t, v := range attrs {
		_ = a.Set(t, v) // cannot fail for bool values
	}
	return a
}

// secretTemplate is an AES KEK: a private, sensitive, non-extractable token
// object that only encrypts and decrypts.
func secretTemplate(ref string) crypto11.AttributeSet {
	return set(idAndLabel(ref), map[uint]any{
		p11.CKA_TOKEN:       true,
		p11.CKA_PRIVATE:     true,
		p11.CKA_SENSITIVE:   true,
		p11.CKA_EXTRACTABLE: false,
		p11.CKA_ENCRYPT:     true,
		p11.CKA_DECRYPT:     true,
		p11.CKA_WRAP:        false,
		p11.CKA_UNWRAP:      false,
		p11.CKA_SIGN:        false,
		p11.CKA_VERIFY:      false,
	})
}

func checkRef(ref string) error {
	switch {
	case ref == "":
		return errors.New("empty key ref")
	case len(ref) > maxRefLength:
		return fmt.Errorf("key ref longer than %d bytes", maxRefLength)
	case ref == HealthKeyLabel:
		return fmt.Errorf("key ref %q is reserved", ref)
	}
	return nil
}

// panicError is a panic recovered from a crypto11 call.
type panicError struct{ v any }

func (p *panicError) Error() string { return fmt.Sprintf("PKCS#11 call panicked: %v", p.v) }

func (p *panicError) Unwrap() error {
	if err, ok := p.v.(error); ok {
		return err
	}
	return nil
}

// safely runs f, turning a panic into an error.
func safely(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{v: v}
		}
	}()
	return f()
}

// decryptError is C_Decrypt refusing a ciphertext: "not authentic" when
// sure is set (the return value says so), and otherwise only if the token
// turns out to be healthy.
type decryptError struct {
	cause error
	sure  bool
}

func (d *decryptError) Error() string { return "C_Decrypt: " + d.cause.Error() }
func (d *decryptError) Unwrap() error { return d.cause }

// ckrAEADDecryptFailed is PKCS#11 3.0's CKR_AEAD_DECRYPT_FAILED, which
// github.com/miekg/pkcs11 v1.1 does not name.
const ckrAEADDecryptFailed p11.Error = 0x35

// decryptOutcome classifies what C_Decrypt returned for a ciphertext by its
// PKCS#11 return value. A tag that does not verify is CKR_ENCRYPTED_DATA_INVALID
// or CKR_AEAD_DECRYPT_FAILED in most tokens; SoftHSM2 says CKR_GENERAL_ERROR,
// which a health probe must then tell from a fault. Other codes are faults
// or refusals, not a verdict on the ciphertext.
func decryptOutcome(err error) error {
	var code p11.Error
	if err == nil || !errors.As(err, &code) {
		return err
	}
	switch code {
	case p11.CKR_ENCRYPTED_DATA_INVALID, p11.CKR_ENCRYPTED_DATA_LEN_RANGE, ckrAEADDecryptFailed:
		return &decryptError{cause: err, sure: true}
	case p11.CKR_GENERAL_ERROR:
		return &decryptError{cause: err}
	}
	return err
}

// backend marks a token error that is not a fault: the token refused.
func backend(what string, err error) error {
	return fmt.Errorf("pkcs11 %s: %w (%w)", what, err, keys.ErrBackend)
}

func (c *Custody) unavailable(what string) error {
	return fmt.Errorf("pkcs11 %s: token %q unavailable, reconnecting: %w", what, c.cfg.TokenLabel, keys.ErrUnavailable)
}

var (
	errStale    = errors.New("context replaced")
	errNoAnswer = errors.New("no answer")
)

// acquire takes a reference on the current conn (on want, when not nil:
// errStale when it is no longer current).
func (c *Custody) acquire(what string, want *conn) (*conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("pkcs11 %s: custody is closed: %w", what, keys.ErrUnavailable)
	}
	if n := len(c.stuck); n >= c.maxStuck {
		return nil, fmt.Errorf("pkcs11 %s: %d calls into token %q have not returned; refusing more until they do: %w",
			what, n, c.cfg.TokenLabel, keys.ErrUnavailable)
	}
	cn := c.cur
	if want != nil && cn != want {
		return nil, errStale
	}
	if cn == nil {
		return nil, c.unavailable(what)
	}
	cn.calls++
	return cn, nil
}

// release drops a reference acquire took, closing cn when it was retired
// and this was its last call.
func (c *Custody) release(cn *conn) {
	c.mu.Lock()
	cn.calls--
	last := cn.retired && cn.calls == 0
	c.mu.Unlock()
	if last {
		cn.close(c.log)
	}
}

// retireLocked takes cn out of use; it is closed once its calls have
// returned. c.mu must be held and cn must not be current any more.
func (c *Custody) retireLocked(cn *conn) {
	cn.retired = true
	if cn.calls == 0 {
		go cn.close(c.log) // C_Finalize may hang as well
	}
}

// do runs f on cn (which the caller acquired; do releases it) in a
// goroutine of its own and waits for it until ctx ends or the call timeout
// passes (generateFactor times that for exclusive calls). finished is false when it stopped waiting: f may then still be
// running, and counts as stuck until it returns. exclusive calls hold
// genSem while f runs.
func (c *Custody) do(ctx context.Context, what string, cn *conn, exclusive bool, f func(*conn) error) (finished bool, err error) {
	st := &callState{start: time.Now(), limit: c.callTimeout, done: make(chan struct{})}
	if exclusive {
		st.limit *= generateFactor
	}
	ctx, cancel := context.WithTimeout(ctx, st.limit)
	defer cancel()
	go func() {
		defer c.release(cn)
		if exclusive {
			c.genSem <- struct{}{}
			defer func() { <-c.genSem }()
		}
		c.mu.Lock()
		gone := st.abandoned
		c.mu.Unlock()
		var err error
		if !gone { // the caller may have left while this waited for genSem
			err = safely(func() error { return f(cn) })
		}
		c.mu.Lock()
		st.err = err
		close(st.done)
		if st.abandoned {
			delete(c.stuck, st)
			c.stuckGauge.Set(float64(len(c.stuck)))
			if !gone {
				c.log.Info("a stuck PKCS#11 call returned", "token", c.cfg.TokenLabel, "call", what, "after", time.Since(st.start).Round(time.Millisecond))
			}
		}
		c.mu.Unlock()
	}()
	select {
	case <-st.done:
		return true, st.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-st.done: // it returned meanwhile
		return true, st.err
	default:
	}
	st.abandoned = true
	c.stuck[st] = struct{}{}
	c.stuckGauge.Set(float64(len(c.stuck)))
	if errors.Is(ctx.Err(), context.Canceled) {
		return false, fmt.Errorf("pkcs11 %s: %w", what, ctx.Err())
	}
	c.log.Warn("PKCS#11 call missed its deadline; it stays in the library until it returns", "token", c.cfg.TokenLabel, "call", what, "stuck", len(c.stuck))
	return false, fmt.Errorf("pkcs11 %s: token %q has not answered within %v: %w",
		what, c.cfg.TokenLabel, time.Since(st.start).Round(time.Millisecond), keys.ErrUnavailable)
}

// overdue returns how many abandoned calls have been in the library longer
// than their deadline.
func (c *Custody) overdue() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for st := range c.stuck {
		if time.Since(st.start) >= st.limit {
			n++
		}
	}
	return n
}

// runConn calls f with the current conn under the call deadline and, when
// it fails, tells a token fault from a refusal with a health probe. On a
// fault it starts reconnecting and returns an error wrapping
// keys.ErrUnavailable. A call that is not exclusive (not a generation) and
// fails on a healthy token is made once more with the handles found again:
// another process may have destroyed the key, and perhaps made it again.
func (c *Custody) runConn(ctx context.Context, what string, exclusive bool, f func(cn *conn) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pkcs11 %s: %w", what, err)
	}
	for attempt := 0; ; attempt++ {
		cn, err := c.acquire(what, nil)
		if err != nil {
			return err
		}
		finished, err := c.do(ctx, what, cn, exclusive, f)
		if err == nil || !finished {
			return err
		}
		var de *decryptError
		if errors.As(err, &de) && de.sure {
			return fmt.Errorf("pkcs11 %s: %w (%w)", what, keys.ErrDecrypt, de.cause)
		}
		switch perr := c.probe(cn); {
		case errors.Is(perr, errStale):
			if attempt == 0 {
				continue // another call reconnected meanwhile: try the new context
			}
			return c.unavailable(what)
		case errors.Is(perr, errNoAnswer), errors.Is(perr, keys.ErrUnavailable):
			return perr
		case perr != nil:
			c.markDown(cn, fmt.Errorf("%s failed (%v), health probe failed: %w", what, err, perr))
			return c.unavailable(what)
		}
		// The token is healthy: err is about this call.
		switch {
		case errors.As(err, &de):
			return fmt.Errorf("pkcs11 %s: %w (%w)", what, keys.ErrDecrypt, de.cause)
		case errors.Is(err, keys.ErrNotFound), errors.Is(err, keys.ErrConflict), exclusive:
			return err
		case attempt == 0:
			cn.dropCache()
			continue
		}
		return err
	}
}

// probe is a real AES-GCM round trip with the health key of cn, under the
// call deadline.
func (c *Custody) probe(cn *conn) error {
	if _, err := c.acquire("probe", cn); err != nil {
		return err
	}
	finished, err := c.do(context.Background(), "health probe", cn, false, func(cn *conn) error { return roundTrip(cn.health) })
	if !finished {
		return fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	return err
}

func roundTrip(g cipher.AEAD) error {
	nonce := make([]byte, nonceSize)
	probe := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	if _, err := rand.Read(probe); err != nil {
		return err
	}
	ct := g.Seal(nil, nonce, probe, []byte(HealthKeyLabel))
	pt, err := g.Open(nil, nonce, ct, []byte(HealthKeyLabel))
	if err != nil {
		return fmt.Errorf("health key open: %w", err)
	}
	if !bytes.Equal(pt, probe) {
		return errors.New("health key round trip returned other bytes")
	}
	return nil
}

// markDown retires cn (unless already replaced) and starts the
// reconnection loop, which waits for cn to close first.
func (c *Custody) markDown(cn *conn, cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.cur != cn {
		return
	}
	// cn was current, so no reconnection loop runs: start one.
	c.cur = nil
	c.retireLocked(cn)
	c.up.Set(0)
	c.log.Warn("PKCS#11 token fault: context retired, reconnecting", "token", c.cfg.TokenLabel, "err", cause)
	c.loopDone = make(chan struct{})
	go c.reconnectLoop(cn.closed, c.loopDone)
}

func (c *Custody) reconnectLoop(old <-chan struct{}, done chan struct{}) {
	defer close(done)
	// crypto11 finalizes the module only when its last context closes, and
	// only a finalized module starts afresh.
	select {
	case <-c.stop:
		return
	case <-old:
	}
	backoff := c.minBackoff
	for attempt := 1; ; attempt++ {
		select {
		case <-c.stop:
			return
		case <-time.After(backoff):
		}
		cn, err := c.configureWithin(c.callTimeout)
		if err != nil {
			if attempt == 1 || attempt%20 == 0 {
				c.log.Warn("PKCS#11 reconnect failed", "token", c.cfg.TokenLabel, "attempt", attempt, "err", err)
			}
			backoff = min(2*backoff, c.maxBackoff)
			continue
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			cn.close(c.log)
			return
		}
		c.cur = cn
		c.mu.Unlock()
		c.reconnects.Inc()
		c.up.Set(1)
		c.log.Info("PKCS#11 token usable again", "token", c.cfg.TokenLabel, "attempts", attempt)
		return
	}
}

// Check is the readiness probe: a real AES-GCM round trip in the token,
// bounded by ctx and the call timeout. It returns an error wrapping
// keys.ErrUnavailable while the token is faulty or being reconnected, while
// a call has been stuck in the library past its deadline, and
// when the round trip does not finish in time.
func (c *Custody) Check(ctx context.Context) error {
	if n := c.overdue(); n > 0 {
		return fmt.Errorf("pkcs11 check: %d calls into token %q have not returned by their deadline: %w",
			n, c.cfg.TokenLabel, keys.ErrUnavailable)
	}
	cn, err := c.acquire("check", nil)
	if err != nil {
		return err
	}
	finished, err := c.do(ctx, "check", cn, false, func(cn *conn) error { return roundTrip(cn.health) })
	switch {
	case err == nil:
		return nil
	case !finished:
		if errors.Is(err, keys.ErrUnavailable) {
			return err
		}
		return fmt.Errorf("%w (%w)", err, keys.ErrUnavailable)
	}
	c.markDown(cn, fmt.Errorf("health check: %w", err))
	return c.unavailable("check")
}

// Close stops reconnecting and closes the context once the calls using it
// have returned, waiting for that at most the call timeout. Calls made
// afterwards fail with keys.ErrUnavailable.
func (c *Custody) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.stop)
	loop := c.loopDone
	var closed chan struct{}
	if cn := c.cur; cn != nil {
		c.cur = nil
		closed = cn.closed
		c.retireLocked(cn)
	}
	c.up.Set(0)
	c.mu.Unlock()
	timer := time.NewTimer(c.callTimeout)
	defer timer.Stop()
	for _, ch := range []chan struct{}{loop, closed} {
		if ch == nil {
			continue
		}
		select {
		case <-ch:
		case <-timer.C:
			return fmt.Errorf("pkcs11 close: token %q: calls still inside the library after %v; the context closes when they return", c.cfg.TokenLabel, c.callTimeout)
		}
	}
	return nil
}

// direct makes the PKCS#11 calls whose outcome crypto11 hides (it turns
// C_Decrypt's return value into text) or that it cannot make (finding every
// object with a label, deleting the lone half of a key pair). It uses the
// module crypto11 initialised, and crypto11's login, which PKCS#11 shares
// among all of an application's sessions, with sessions of its own.
type direct struct {
	mod  *p11.Ctx
	slot uint
	pool chan p11.SessionHandle
}

// openDirect loads module (already loaded and initialised by crypto11) and
// finds the slot of the token labelled label.
func openDirect(module, label string) (*direct, error) {
	mod := p11.New(module)
	if mod == nil {
		return nil, fmt.Errorf("load %s for direct calls", module)
	}
	slots, err := mod.GetSlotList(true)
	if err != nil {
		mod.Destroy()
		return nil, fmt.Errorf("C_GetSlotList: %w", err)
	}
	for _, slot := range slots {
		ti, err := mod.GetTokenInfo(slot)
		if err == nil && ti.Label == label {
			return &direct{mod: mod, slot: slot, pool: make(chan p11.SessionHandle, directPoolSize)}, nil
		}
	}
	mod.Destroy()
	return nil, fmt.Errorf("no token labelled %q for direct calls", label)
}

// with runs f in a session from the pool. A session whose call failed is
// closed rather than reused.
func (d *direct) with(f func(s p11.SessionHandle) error) error {
	var s p11.SessionHandle
	select {
	case s = <-d.pool:
	default:
		var err error
		if s, err = d.mod.OpenSession(d.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION); err != nil {
			return fmt.Errorf("C_OpenSession: %w", err)
		}
	}
	err := f(s)
	if err == nil {
		select {
		case d.pool <- s:
			return nil
		default:
		}
	}
	_ = d.mod.CloseSession(s)
	return err
}

func (d *direct) closeSessions() {
	for {
		select {
		case s := <-d.pool:
			_ = d.mod.CloseSession(s)
		default:
			return
		}
	}
}

// find returns the objects matching tmpl.
func (d *direct) find(s p11.SessionHandle, tmpl []*p11.Attribute) ([]p11.ObjectHandle, error) {
	if err := d.mod.FindObjectsInit(s, tmpl); err != nil {
		return nil, fmt.Errorf("C_FindObjectsInit: %w", err)
	}
	var all []p11.ObjectHandle
	for {
		hs, _, err := d.mod.FindObjects(s, 32)
		if err != nil {
			_ = d.mod.FindObjectsFinal(s)
			return nil, fmt.Errorf("C_FindObjects: %w", err)
		}
		if len(hs) == 0 {
			break
		}
		all = append(all, hs...)
	}
	if err := d.mod.FindObjectsFinal(s); err != nil {
		return nil, fmt.Errorf("C_FindObjectsFinal: %w", err)
	}
	return all, nil
}

// labelled returns every object labelled ref, of any class.
func (d *direct) labelled(ref string) ([]p11.ObjectHandle, error) {
	var hs []p11.ObjectHandle
	err := d.with(func(s p11.SessionHandle) error {
		var err error
		hs, err = d.find(s, []*p11.Attribute{p11.NewAttribute(p11.CKA_LABEL, []byte(ref))})
		return err
	})
	return hs, err
}

// labelTaken reports whether any object carries label ref: a key, a key
// pair or the lone half of one.
func labelTaken(cn *conn, ref string) (bool, error) {
	hs, err := cn.raw.labelled(ref)
	return len(hs) > 0, err
}

// GenerateKEK creates an AES-256 key labelled ref in the token (sensitive,
// non-extractable). A label in use fails with an error wrapping
// keys.ErrConflict.
func (c *Custody) GenerateKEK(ctx context.Context, ref string) error {
	if err := checkRef(ref); err != nil {
		return fmt.Errorf("pkcs11 custody: %w", err)
	}
	return c.runConn(ctx, "generate KEK", true, func(cn *conn) error {
		taken, err := labelTaken(cn, ref)
		if err != nil {
			return backend("generate KEK: look up label", err)
		}
		if taken {
			return fmt.Errorf("pkcs11 custody: a key labelled %q exists: %w", ref, keys.ErrConflict)
		}
		k, err := cn.cx.GenerateSecretKeyWithAttributes(secretTemplate(ref), 256, crypto11.CipherAES)
		if err != nil {
			return backend("generate KEK", err)
		}
		g, err := k.NewGCM()
		if err != nil {
			return backend("generate KEK: GCM", err)
		}
		cn.cacheMu.Lock()
		cn.keks[ref] = g
		cn.cacheMu.Unlock()
		return nil
	})
}

// kek returns the GCM of the KEK labelled ref in cn.
func (c *Custody) kek(cn *conn, ref string) (cipher.AEAD, error) {
	return findLabelled(cn, cn.keks, ref, labelledKEK, cn.cx.FindKeys, func(k *crypto11.SecretKey) (cipher.AEAD, error) {
		g, err := k.NewGCM()
		if err != nil {
			return nil, backend("KEK GCM", err)
		}
		return g, nil
	})
}

// labelled names a kind of labelled object in findLabelled's errors.
type labelled struct {
	find string // what failed when the search did
	one  string // one object of the kind
	many string // several objects of the kind
}

var (
	labelledKEK    = labelled{find: "find KEK", one: "KEK", many: "keys"}
	labelledSigner = labelled{find: "find key pair", one: "key", many: "key pairs"}
)

// findLabelled returns cache[ref], or else the one object of kind labelled
// ref that find lists in cn, made a T by use and cached (under
// cn.cacheMu). A missing object is keys.ErrNotFound; several are refused
// rather than guessed between.
func findLabelled[O, T any](cn *conn, cache map[string]T, ref string, kind labelled,
	find func(id, label []byte) ([]O, error), use func(O) (T, error)) (T, error) {
	cn.cacheMu.Lock()
	v, ok := cache[ref]
	cn.cacheMu.Unlock()
	if ok {
		return v, nil
	}
	var zero T
	objs, err := find(nil, []byte(ref))
	if err != nil {
		return zero, backend(kind.find, err)
	}
	switch len(objs) {
	case 0:
		return zero, fmt.Errorf("pkcs11 custody: %s %q: %w", kind.one, ref, keys.ErrNotFound)
	case 1:
	default:
		return zero, fmt.Errorf("pkcs11 custody: %d %s are labelled %q; refusing to guess: %w", len(objs), kind.many, ref, keys.ErrBackend)
	}
	v, err = use(objs[0])
	if err != nil {
		return zero, err
	}
	cn.cacheMu.Lock()
	cache[ref] = v
	cn.cacheMu.Unlock()
	return v, nil
}

// kekHandle returns the object handle of the KEK labelled ref in cn, for
// direct calls.
func (c *Custody) kekHandle(cn *conn, s p11.SessionHandle, ref string) (p11.ObjectHandle, error) {
	cn.cacheMu.Lock()
	h, ok := cn.kekHandles[ref]
	cn.cacheMu.Unlock()
	if ok {
		return h, nil
	}
	hs, err := cn.raw.find(s, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_LABEL, []byte(ref)),
	})
	if err != nil {
		return 0, backend("find KEK", err)
	}
	switch len(hs) {
	case 0:
		return 0, fmt.Errorf("pkcs11 custody: KEK %q: %w", ref, keys.ErrNotFound)
	case 1:
	default:
		return 0, fmt.Errorf("pkcs11 custody: %d keys are labelled %q; refusing to guess: %w", len(hs), ref, keys.ErrBackend)
	}
	cn.cacheMu.Lock()
	cn.kekHandles[ref] = hs[0]
	cn.cacheMu.Unlock()
	return hs[0], nil
}

// Seal encrypts plaintext with the KEK labelled ref in the token (AES-GCM,
// random 12-byte nonce, aad bound) and returns nonce||ciphertext||tag.
func (c *Custody) Seal(ctx context.Context, ref string, plaintext, aad []byte) ([]byte, error) {
	if err := checkRef(ref); err != nil {
		return nil, fmt.Errorf("pkcs11 custody: %w", err)
	}
	nonce := make([]byte, nonceSize, nonceSize+len(plaintext)+tagSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("pkcs11 seal: nonce: %w", err)
	}
	var out []byte
	err := c.runConn(ctx, "seal", false, func(cn *conn) error {
		g, err := c.kek(cn, ref)
		if err != nil {
			return err
		}
		out = g.Seal(nonce, nonce, plaintext, aad) // panics on a PKCS#11 error; do recovers
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Open decrypts what Seal returned for ref and aad. A ciphertext or aad that
// does not authenticate gives an error wrapping keys.ErrDecrypt, told
// from a token fault by C_Decrypt's return value.
func (c *Custody) Open(ctx context.Context, ref string, ciphertext, aad []byte) ([]byte, error) {
	if err := checkRef(ref); err != nil {
		return nil, fmt.Errorf("pkcs11 custody: %w", err)
	}
	if len(ciphertext) < nonceSize+tagSize {
		return nil, fmt.Errorf("pkcs11 open: ciphertext too short: %w", keys.ErrDecrypt)
	}
	var out []byte
	err := c.runConn(ctx, "open", false, func(cn *conn) error {
		return cn.raw.with(func(s p11.SessionHandle) error {
			h, err := c.kekHandle(cn, s, ref)
			if err != nil {
				return err
			}
			params := p11.NewGCMParams(ciphertext[:nonceSize], aad, tagSize*8)
			defer params.Free()
			if err := cn.raw.mod.DecryptInit(s, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, h); err != nil {
				return backend("open: C_DecryptInit", err)
			}
			out, err = cn.raw.mod.Decrypt(s, ciphertext[nonceSize:])
			return decryptOutcome(err)
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GenerateSigner creates a key pair labelled ref in the token (the private
// half sensitive and non-extractable) and returns its signer. A label in use
// fails with an error wrapping keys.ErrConflict.
func (c *Custody) GenerateSigner(ctx context.Context, ref string, alg keys.Algorithm) (crypto.Signer, error) {
	if err := checkRef(ref); err != nil {
		return nil, fmt.Errorf("pkcs11 custody: %w", err)
	}
	var curve elliptic.Curve
	bits := 0
	switch alg {
	case keys.ECDSAP256:
		curve = elliptic.P256()
	case keys.ECDSAP384:
		curve = elliptic.P384()
	case keys.RSA2048:
		bits = 2048
	case keys.RSA3072:
		bits = 3072
	case keys.RSA4096:
		bits = 4096
	default:
		return nil, fmt.Errorf("pkcs11 custody: unknown key algorithm %q", alg)
	}
	var pub crypto.PublicKey
	err := c.runConn(ctx, "generate signer", true, func(cn *conn) error {
		taken, err := labelTaken(cn, ref)
		if err != nil {
			return backend("generate signer: look up label", err)
		}
		if taken {
			return fmt.Errorf("pkcs11 custody: a key labelled %q exists: %w", ref, keys.ErrConflict)
		}
		public := set(idAndLabel(ref), map[uint]any{p11.CKA_TOKEN: true, p11.CKA_PRIVATE: false, p11.CKA_VERIFY: true})
		private := set(idAndLabel(ref), map[uint]any{
			p11.CKA_TOKEN:       true,
			p11.CKA_PRIVATE:     true,
			p11.CKA_SENSITIVE:   true,
			p11.CKA_EXTRACTABLE: false,
			p11.CKA_SIGN:        true,
		})
		var s crypto11.Signer
		if curve != nil {
			s, err = cn.cx.GenerateECDSAKeyPairWithAttributes(public, private, curve)
		} else {
			_ = public.Set(p11.CKA_ENCRYPT, false)
			_ = private.Set(p11.CKA_DECRYPT, false)
			s, err = cn.cx.GenerateRSAKeyPairWithAttributes(public, private, bits)
		}
		if err != nil {
			return backend("generate "+string(alg)+" key", err)
		}
		pub = s.Public()
		cn.cacheMu.Lock()
		cn.signers[ref] = s
		cn.cacheMu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &signer{c: c, ref: ref, pub: pub}, nil
}

// findSigner returns the key pair labelled ref in cn.
func (c *Custody) findSigner(cn *conn, ref string) (crypto11.Signer, error) {
	return findLabelled(cn, cn.signers, ref, labelledSigner, cn.cx.FindKeyPairs,
		func(s crypto11.Signer) (crypto11.Signer, error) { return s, nil })
}

// Signer returns the signer of the key pair labelled ref (an error wrapping
// keys.ErrNotFound when absent). It stays usable across token faults.
func (c *Custody) Signer(ctx context.Context, ref string) (crypto.Signer, error) {
	if err := checkRef(ref); err != nil {
		return nil, fmt.Errorf("pkcs11 custody: %w", err)
	}
	var pub crypto.PublicKey
	err := c.runConn(ctx, "find signer", false, func(cn *conn) error {
		s, err := c.findSigner(cn, ref)
		if err != nil {
			return err
		}
		pub = s.Public()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &signer{c: c, ref: ref, pub: pub}, nil
}

// Destroy deletes every object labelled ref: a key pair, a KEK, or the
// lone private or public half a failed generation left. None is not an
// error.
func (c *Custody) Destroy(ctx context.Context, ref string) error {
	if err := checkRef(ref); err != nil {
		return fmt.Errorf("pkcs11 custody: %w", err)
	}
	return c.runConn(ctx, "destroy", false, func(cn *conn) error {
		cn.cacheMu.Lock()
		delete(cn.keks, ref)
		delete(cn.kekHandles, ref)
		delete(cn.signers, ref)
		cn.cacheMu.Unlock()
		return cn.raw.with(func(s p11.SessionHandle) error {
			hs, err := cn.raw.find(s, []*p11.Attribute{p11.NewAttribute(p11.CKA_LABEL, []byte(ref))})
			if err != nil {
				return backend("destroy: find objects", err)
			}
			for _, h := range hs {
				if err := cn.raw.mod.DestroyObject(s, h); err != nil {
					return backend("destroy: C_DestroyObject", err)
				}
			}
			return nil
		})
	})
}

// signer is a crypto.Signer whose key lives in the token. It finds its key
// by label in whatever context is current, so it survives reconnections.
type signer struct {
	c   *Custody
	ref string
	pub crypto.PublicKey
}

// Public returns the public key.
func (s *signer) Public() crypto.PublicKey { return s.pub }

// Sign signs digest in the token, waiting at most the call timeout
// (crypto.Signer passes no context). rand is ignored: the token draws its
// own.
func (s *signer) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var sig []byte
	err := s.c.runConn(context.Background(), "sign", false, func(cn *conn) error {
		k, err := s.c.findSigner(cn, s.ref)
		if err != nil {
			return err
		}
		if eq, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(s.pub) {
			return fmt.Errorf("pkcs11 custody: the key labelled %q is not the key this signer was made for: %w", s.ref, keys.ErrBackend)
		}
		out, err := k.Sign(r, digest, opts)
		if err != nil {
			return backend("sign", err)
		}
		sig = out
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sig, nil
}
