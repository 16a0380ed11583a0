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
// whose label exists (api.ErrConflict) and use refuses a label that names
// several keys.
//
// # Faults
//
// A crypto11 context never recovers once the token has gone away (removed,
// module finalized, session handles invalidated): its object and session
// handles stay invalid even after the token returns. So every call runs
// under a read lock with panics recovered (crypto11's GCM Seal panics on any
// PKCS#11 error), and any failure is followed by a health probe, a real
// AES-GCM round trip with a dedicated health key. When the probe fails, the
// context is closed (which finalizes the module), every cached handle is
// dropped, calls fail at once with errors wrapping api.ErrUnavailable and
// Check reports unhealthy, while a background loop configures a new context
// with backoff and finds the keys again by label. Signers handed out before
// the fault keep working afterwards: they look their key up by label in the
// current context.
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
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/ThalesGroup/crypto11"
	p11 "github.com/miekg/pkcs11"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/ca"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
)

// HealthKeyLabel is the label of the AES key Check and the fault probe use.
// It is created in the token on first use.
const HealthKeyLabel = "clusterkeys-health-check"

const (
	nonceSize         = 12
	tagSize           = 16
	defaultMinBackoff = 50 * time.Millisecond
	defaultMaxBackoff = time.Second
	poolWaitTimeout   = 10 * time.Second
	maxRefLength      = 512
)

// Options tunes a Custody. The zero value is usable.
type Options struct {
	// Logger logs faults and reconnections (never PINs or key material);
	// discarded when nil.
	Logger *slog.Logger
	// Registerer, when set, receives clusterkeys_pkcs11_reconnects_total and
	// clusterkeys_pkcs11_up.
	Registerer prometheus.Registerer
	// MinBackoff and MaxBackoff bound the delay between reconnection
	// attempts (50 ms and 1 s when zero).
	MinBackoff, MaxBackoff time.Duration
}

// Custody keeps keys in a PKCS#11 token. It is safe for concurrent use.
type Custody struct {
	cfg        Config
	log        *slog.Logger
	minBackoff time.Duration
	maxBackoff time.Duration
	reconnects prometheus.Counter
	up         prometheus.Gauge

	// genMu makes "check the label is free, then generate" atomic within
	// this process.
	genMu sync.Mutex

	// mu is held for reading while a call uses cx, and for writing while cx
	// is replaced or closed, so a context is never closed under a call.
	mu       sync.RWMutex
	cx       *crypto11.Context
	gen      uint64      // incremented with every new context
	health   cipher.AEAD // GCM of the health key in cx
	closed   bool
	stop     chan struct{}
	loopDone chan struct{}

	// cacheMu guards the handles found in cx (cleared with cx).
	cacheMu sync.Mutex
	keks    map[string]cipher.AEAD
	signers map[string]crypto11.Signer
}

var _ ca.Keys = (*Custody)(nil)
var _ keywrap.Custody = (*Custody)(nil)

// Open configures the token cfg names, logs in and finds (or creates) the
// health key. It fails when the token cannot be used now; once open,
// Custody survives token faults by itself.
func Open(cfg Config, opts Options) (*Custody, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("pkcs11 custody: %w", err)
	}
	c := &Custody{
		cfg:        cfg,
		log:        opts.Logger,
		minBackoff: opts.MinBackoff,
		maxBackoff: opts.MaxBackoff,
		stop:       make(chan struct{}),
		keks:       map[string]cipher.AEAD{},
		signers:    map[string]crypto11.Signer{},
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
	c.reconnects = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "clusterkeys_pkcs11_reconnects_total",
		Help: "Times the PKCS#11 context was configured again after a token fault.",
	})
	c.up = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "clusterkeys_pkcs11_up",
		Help: "1 while the PKCS#11 token is usable, 0 while reconnecting.",
	})
	if opts.Registerer != nil {
		c.reconnects = register(opts.Registerer, c.reconnects)
		c.up = register(opts.Registerer, c.up)
	}
	cx, health, err := c.configure()
	if err != nil {
		return nil, fmt.Errorf("pkcs11 custody: %s: %w", cfg, err)
	}
	c.cx, c.health, c.gen = cx, health, 1
	c.up.Set(1)
	return c, nil
}

// register registers col, or returns the collector already registered
// under its name (a second Custody in one process).
func register[T prometheus.Collector](reg prometheus.Registerer, col T) T {
	if err := reg.Register(col); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing
			}
		}
	}
	return col
}

// configure makes a new crypto11 context and finds or creates the health key.
func (c *Custody) configure() (cx *crypto11.Context, health cipher.AEAD, err error) {
	err = safely(func() error {
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
		return nil, nil, fmt.Errorf("configure token: %w", err)
	}
	err = safely(func() error {
		var err error
		health, err = c.healthKey(cx)
		return err
	})
	if err != nil {
		_ = safely(cx.Close)
		return nil, nil, fmt.Errorf("health key: %w", err)
	}
	return cx, health, nil
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
		c.genMu.Lock()
		k, err = cx.GenerateSecretKeyWithAttributes(secretTemplate(HealthKeyLabel), 256, crypto11.CipherAES)
		c.genMu.Unlock()
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

// decryptError is a C_Decrypt failure that means "not authentic" if the
// token turns out to be healthy.
type decryptError struct{ cause error }

func (d *decryptError) Error() string { return d.cause.Error() }
func (d *decryptError) Unwrap() error { return d.cause }

var ckrName = regexp.MustCompile(`CKR_[A-Z0-9_]+`)

// ckr returns the CKR_ name in err ("" when none). crypto11 sometimes
// flattens PKCS#11 errors into text (fmt %v), hence the text fallback.
func ckr(err error) string {
	var pe p11.Error
	if errors.As(err, &pe) {
		return ckrName.FindString(pe.Error())
	}
	return ckrName.FindString(err.Error())
}

// backend marks a token error that is not a fault: the token refused.
func backend(what string, err error) error {
	return fmt.Errorf("pkcs11 %s: %w (%w)", what, err, api.ErrBackend)
}

func (c *Custody) unavailable(what string) error {
	return fmt.Errorf("pkcs11 %s: token %q unavailable, reconnecting: %w", what, c.cfg.TokenLabel, api.ErrUnavailable)
}

// call runs f with the current context under the read lock. gen is 0 when
// f did not run.
func (c *Custody) call(ctx context.Context, what string, f func(cx *crypto11.Context) error) (gen uint64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("pkcs11 %s: %w", what, err)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return 0, fmt.Errorf("pkcs11 %s: custody is closed: %w", what, api.ErrUnavailable)
	}
	if c.cx == nil {
		return 0, c.unavailable(what)
	}
	return c.gen, safely(func() error { return f(c.cx) })
}

// run calls f and, when it fails, tells a token fault from a refusal with a
// health probe. On a fault it starts reconnecting and returns an error
// wrapping api.ErrUnavailable. A stale handle (the key was destroyed and
// perhaps made again by another process) is looked up once more.
func (c *Custody) run(ctx context.Context, what string, f func(cx *crypto11.Context) error) error {
	for attempt := 0; ; attempt++ {
		gen, err := c.call(ctx, what, f)
		if err == nil || gen == 0 {
			return err
		}
		switch perr := c.probe(gen); {
		case errors.Is(perr, errStale):
			if attempt == 0 {
				continue // another call reconnected meanwhile: try the new context
			}
			return c.unavailable(what)
		case perr != nil:
			c.markDown(gen, fmt.Errorf("%s failed (%v), health probe failed: %w", what, err, perr))
			return c.unavailable(what)
		}
		// The token is healthy: err is about this call.
		var de *decryptError
		if errors.As(err, &de) {
			return fmt.Errorf("pkcs11 %s: %w", what, keywrap.ErrDecrypt)
		}
		if name := ckr(err); attempt == 0 && (name == "CKR_OBJECT_HANDLE_INVALID" || name == "CKR_KEY_HANDLE_INVALID") {
			c.dropCache()
			continue
		}
		return err
	}
}

var errStale = errors.New("context replaced")

// probe is a real AES-GCM round trip with the health key of context gen.
func (c *Custody) probe(gen uint64) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.cx == nil || c.gen != gen {
		return errStale
	}
	return safely(func() error { return roundTrip(c.health) })
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

// markDown closes context gen (unless already replaced) and starts the
// reconnection loop.
func (c *Custody) markDown(gen uint64, cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.cx == nil || c.gen != gen {
		return
	}
	// cx was up, so no reconnection loop runs: start one.
	c.closeLocked()
	c.up.Set(0)
	c.log.Warn("PKCS#11 token fault: context closed, reconnecting", "token", c.cfg.TokenLabel, "err", cause)
	c.loopDone = make(chan struct{})
	go c.reconnectLoop(c.loopDone)
}

// closeLocked closes the current context and forgets its handles.
func (c *Custody) closeLocked() {
	if c.cx != nil {
		if err := safely(c.cx.Close); err != nil {
			c.log.Warn("closing PKCS#11 context", "err", err)
		}
	}
	c.cx, c.health = nil, nil
	c.dropCache()
}

func (c *Custody) dropCache() {
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	clear(c.keks)
	clear(c.signers)
}

func (c *Custody) reconnectLoop(done chan struct{}) {
	defer close(done)
	backoff := c.minBackoff
	for attempt := 1; ; attempt++ {
		select {
		case <-c.stop:
			return
		case <-time.After(backoff):
		}
		cx, health, err := c.configure()
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
			_ = safely(cx.Close)
			return
		}
		c.cx, c.health = cx, health
		c.gen++
		c.mu.Unlock()
		c.reconnects.Inc()
		c.up.Set(1)
		c.log.Info("PKCS#11 token usable again", "token", c.cfg.TokenLabel, "attempts", attempt)
		return
	}
}

// Check is the readiness probe: a real AES-GCM round trip in the token. It
// returns an error wrapping api.ErrUnavailable while the token is faulty
// or being reconnected.
func (c *Custody) Check(ctx context.Context) error {
	gen, err := c.call(ctx, "check", func(*crypto11.Context) error { return roundTrip(c.health) })
	if err == nil || gen == 0 {
		return err
	}
	c.markDown(gen, fmt.Errorf("health check: %w", err))
	return c.unavailable("check")
}

// Close stops reconnecting and closes the context. Calls made afterwards
// fail with api.ErrUnavailable.
func (c *Custody) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.stop)
	done := c.loopDone
	c.closeLocked()
	c.up.Set(0)
	c.mu.Unlock()
	if done != nil {
		<-done
	}
	return nil
}

// labelTaken reports whether any key carries label ref.
func labelTaken(cx *crypto11.Context, ref string) (bool, error) {
	label := []byte(ref)
	ks, err := cx.FindKeys(nil, label)
	if err != nil {
		return false, err
	}
	if len(ks) > 0 {
		return true, nil
	}
	ps, err := cx.FindKeyPairs(nil, label)
	if err != nil {
		return false, err
	}
	if len(ps) > 0 {
		return true, nil
	}
	// A private key without its public half is not a key pair to crypto11.
	pk, err := cx.FindPrivateKeys(nil, label)
	return len(pk) > 0, err
}

// GenerateKEK creates an AES-256 key labelled ref in the token (sensitive,
// non-extractable). A label in use fails with an error wrapping
// api.ErrConflict.
func (c *Custody) GenerateKEK(ctx context.Context, ref string) error {
	if err := checkRef(ref); err != nil {
		return fmt.Errorf("pkcs11 custody: %w", err)
	}
	c.genMu.Lock()
	defer c.genMu.Unlock()
	return c.run(ctx, "generate KEK", func(cx *crypto11.Context) error {
		taken, err := labelTaken(cx, ref)
		if err != nil {
			return backend("generate KEK: look up label", err)
		}
		if taken {
			return fmt.Errorf("pkcs11 custody: a key labelled %q exists: %w", ref, api.ErrConflict)
		}
		k, err := cx.GenerateSecretKeyWithAttributes(secretTemplate(ref), 256, crypto11.CipherAES)
		if err != nil {
			return backend("generate KEK", err)
		}
		g, err := k.NewGCM()
		if err != nil {
			return backend("generate KEK: GCM", err)
		}
		c.cacheMu.Lock()
		c.keks[ref] = g
		c.cacheMu.Unlock()
		return nil
	})
}

// kek returns the GCM of the KEK labelled ref in cx.
func (c *Custody) kek(cx *crypto11.Context, ref string) (cipher.AEAD, error) {
	c.cacheMu.Lock()
	g, ok := c.keks[ref]
	c.cacheMu.Unlock()
	if ok {
		return g, nil
	}
	ks, err := cx.FindKeys(nil, []byte(ref))
	if err != nil {
		return nil, backend("find KEK", err)
	}
	switch len(ks) {
	case 0:
		return nil, fmt.Errorf("pkcs11 custody: KEK %q: %w", ref, api.ErrNotFound)
	case 1:
	default:
		return nil, fmt.Errorf("pkcs11 custody: %d keys are labelled %q; refusing to guess: %w", len(ks), ref, api.ErrBackend)
	}
	g, err = ks[0].NewGCM()
	if err != nil {
		return nil, backend("KEK GCM", err)
	}
	c.cacheMu.Lock()
	c.keks[ref] = g
	c.cacheMu.Unlock()
	return g, nil
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
	err := c.run(ctx, "seal", func(cx *crypto11.Context) error {
		g, err := c.kek(cx, ref)
		if err != nil {
			return err
		}
		out = g.Seal(nonce, nonce, plaintext, aad) // panics on a PKCS#11 error; run recovers
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Open decrypts what Seal returned for ref and aad. A ciphertext or aad that
// does not authenticate gives an error wrapping keywrap.ErrDecrypt.
func (c *Custody) Open(ctx context.Context, ref string, ciphertext, aad []byte) ([]byte, error) {
	if err := checkRef(ref); err != nil {
		return nil, fmt.Errorf("pkcs11 custody: %w", err)
	}
	if len(ciphertext) < nonceSize+tagSize {
		return nil, fmt.Errorf("pkcs11 open: ciphertext too short: %w", keywrap.ErrDecrypt)
	}
	var out []byte
	err := c.run(ctx, "open", func(cx *crypto11.Context) error {
		g, err := c.kek(cx, ref)
		if err != nil {
			return err
		}
		out, err = g.Open(nil, ciphertext[:nonceSize], ciphertext[nonceSize:], aad)
		if err != nil {
			// SoftHSM reports a failed tag check as CKR_GENERAL_ERROR from
			// C_Decrypt; run's probe tells that from a token fault.
			if strings.Contains(err.Error(), "C_Decrypt:") {
				return &decryptError{cause: err}
			}
			return backend("open", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GenerateSigner creates a key pair labelled ref in the token (the private
// half sensitive and non-extractable) and returns its signer. A label in use
// fails with an error wrapping api.ErrConflict.
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
	c.genMu.Lock()
	defer c.genMu.Unlock()
	var pub crypto.PublicKey
	err := c.run(ctx, "generate signer", func(cx *crypto11.Context) error {
		taken, err := labelTaken(cx, ref)
		if err != nil {
			return backend("generate signer: look up label", err)
		}
		if taken {
			return fmt.Errorf("pkcs11 custody: a key labelled %q exists: %w", ref, api.ErrConflict)
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
			s, err = cx.GenerateECDSAKeyPairWithAttributes(public, private, curve)
		} else {
			_ = public.Set(p11.CKA_ENCRYPT, false)
			_ = private.Set(p11.CKA_DECRYPT, false)
			s, err = cx.GenerateRSAKeyPairWithAttributes(public, private, bits)
		}
		if err != nil {
			return backend("generate "+string(alg)+" key", err)
		}
		pub = s.Public()
		c.cacheMu.Lock()
		c.signers[ref] = s
		c.cacheMu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &signer{c: c, ref: ref, pub: pub}, nil
}

// findSigner returns the key pair labelled ref in cx.
func (c *Custody) findSigner(cx *crypto11.Context, ref string) (crypto11.Signer, error) {
	c.cacheMu.Lock()
	s, ok := c.signers[ref]
	c.cacheMu.Unlock()
	if ok {
		return s, nil
	}
	ps, err := cx.FindKeyPairs(nil, []byte(ref))
	if err != nil {
		return nil, backend("find key pair", err)
	}
	switch len(ps) {
	case 0:
		return nil, fmt.Errorf("pkcs11 custody: key %q: %w", ref, api.ErrNotFound)
	case 1:
	default:
		return nil, fmt.Errorf("pkcs11 custody: %d key pairs are labelled %q; refusing to guess: %w", len(ps), ref, api.ErrBackend)
	}
	c.cacheMu.Lock()
	c.signers[ref] = ps[0]
	c.cacheMu.Unlock()
	return ps[0], nil
}

// Signer returns the signer of the key pair labelled ref (an error wrapping
// api.ErrNotFound when absent). It stays usable across token faults.
func (c *Custody) Signer(ctx context.Context, ref string) (crypto.Signer, error) {
	if err := checkRef(ref); err != nil {
		return nil, fmt.Errorf("pkcs11 custody: %w", err)
	}
	var pub crypto.PublicKey
	err := c.run(ctx, "find signer", func(cx *crypto11.Context) error {
		s, err := c.findSigner(cx, ref)
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

// Destroy deletes every key labelled ref; none is not an error.
func (c *Custody) Destroy(ctx context.Context, ref string) error {
	if err := checkRef(ref); err != nil {
		return fmt.Errorf("pkcs11 custody: %w", err)
	}
	return c.run(ctx, "destroy", func(cx *crypto11.Context) error {
		c.cacheMu.Lock()
		delete(c.keks, ref)
		delete(c.signers, ref)
		c.cacheMu.Unlock()
		label := []byte(ref)
		ks, err := cx.FindKeys(nil, label)
		if err != nil {
			return backend("destroy: find keys", err)
		}
		for _, k := range ks {
			if err := k.Delete(); err != nil {
				return backend("destroy key", err)
			}
		}
		ps, err := cx.FindKeyPairs(nil, label)
		if err != nil {
			return backend("destroy: find key pairs", err)
		}
		for _, p := range ps {
			if err := p.Delete(); err != nil {
				return backend("destroy key pair", err)
			}
		}
		return nil
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

// Sign signs digest in the token. rand is ignored: the token draws its own.
func (s *signer) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var sig []byte
	err := s.c.run(context.Background(), "sign", func(cx *crypto11.Context) error {
		k, err := s.c.findSigner(cx, s.ref)
		if err != nil {
			return err
		}
		if eq, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(s.pub) {
			return fmt.Errorf("pkcs11 custody: the key labelled %q is not the key this signer was made for: %w", s.ref, api.ErrBackend)
		}
		sig, err = k.Sign(r, digest, opts)
		if err != nil {
			return backend("sign", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sig, nil
}
