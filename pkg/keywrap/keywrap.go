// Package keywrap is the wrap/unwrap function: envelope encryption of data
// keys under named key-encryption keys (KEKs) that never leave key custody.
//
// A KEK has versions; one is active. Wrap uses the active version, Unwrap
// the version the ciphertext names, so ciphertexts made before a rotation
// keep unwrapping after it. The KMS shim (pkg/kmsplugin) and the HTTP routes
// (Routes) both use a Service.
//
// # Ciphertext format
//
//	byte 0      format, 0x01
//	bytes 1..4  KEK version, uint32 big-endian
//	bytes 5..   custody's sealed bytes (nonce||ciphertext||tag for AES-GCM)
//
// The custody seals with associated data made of a domain string, the five
// header bytes, the KEK name (length-prefixed) and the caller's aad, so
// changing any byte of the ciphertext, presenting it under another KEK name
// or with another aad fails with ErrDecrypt (code decrypt_failed: one code
// for all of these, so the API is no oracle).
//
// # Key ids
//
// Each version has a KeyID (KeyID): a truncated SHA-256 over the KEK name,
// the version and its custody ref. It names the version publicly (the KMS v2
// key_id) and says nothing about key material.
package keywrap

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// Limits.
const (
	// DefaultMaxPlaintext is the largest plaintext Wrap accepts by default.
	DefaultMaxPlaintext = 64 << 10
	// MaxAAD is the largest caller aad accepted.
	MaxAAD = 4 << 10
	// DefaultActiveTTL is how long Active reuses the active version it read.
	DefaultActiveTTL = 5 * time.Second
	// MaxNameLength is the longest KEK name.
	MaxNameLength = 128
	// HeaderSize is the length of the ciphertext header.
	HeaderSize = 5
)

const (
	formatV1     = 0x01
	aadDomain    = "clusterkeys/keywrap/v1"
	keyIDDomain  = "clusterkeys/keywrap/key-id/v1"
	maxVersions  = 1 << 31
	versionCache = 4096
)

// validName is ^[A-Za-z0-9][A-Za-z0-9._-]*$ written out: every Wrap and
// Unwrap checks the name (the KMS shim's hot path), and a regexp compiled at
// package init cost every function's cold start.
func validName(name string) bool {
	if len(name) == 0 || !isAlnum(name[0]) {
		return false
	}
	for i := 1; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// Options configures a Service. The zero value is usable.
type Options struct {
	// Logger logs key creation and rotation (never key material); discarded
	// when nil.
	Logger *slog.Logger
	// Registerer, when set, receives the Service's metrics.
	Registerer metrics.Registerer
	// ActiveTTL is how long Active reuses what it read (DefaultActiveTTL
	// when zero, no caching when negative). A rotation made by another
	// process is seen after at most this long.
	ActiveTTL time.Duration
	// MaxPlaintext is the largest plaintext Wrap accepts
	// (DefaultMaxPlaintext when zero).
	MaxPlaintext int
	// Now returns the current time (time.Now when nil).
	Now func() time.Time
}

// Service wraps and unwraps with named KEKs. It is safe for concurrent use
// and keeps only public metadata in memory (active versions, for at most
// ActiveTTL, and immutable version records).
type Service struct {
	st      Store
	custody Custody
	log     *slog.Logger
	ttl     time.Duration
	maxPT   int
	now     func() time.Time
	ops     *metrics.CounterVec
	counts  map[string]*opCounts // by op; read-only after New

	mu       sync.Mutex
	active   map[string]activeEntry
	versions map[versionKey]store.KEKVersion
}

type activeEntry struct {
	kek     store.KEK
	version store.KEKVersion
	expires time.Time
}

type versionKey struct {
	name    string
	version int
}

// New returns a Service over a store and key custody.
func New(st Store, c Custody, opts Options) *Service {
	s := &Service{
		st:       st,
		custody:  c,
		log:      opts.Logger,
		ttl:      opts.ActiveTTL,
		maxPT:    opts.MaxPlaintext,
		now:      opts.Now,
		active:   map[string]activeEntry{},
		versions: map[versionKey]store.KEKVersion{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.ttl == 0 {
		s.ttl = DefaultActiveTTL
	}
	if s.maxPT <= 0 {
		s.maxPT = DefaultMaxPlaintext
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.ops = metrics.NewCounterVec(metrics.CounterOpts{
		Name: "clusterkeys_keywrap_operations_total",
		Help: "Key wrap operations by operation (create, wrap, unwrap, rotate) and result (ok, client_error, error).",
	}, []string{"op", "result"})
	s.ops, _ = metrics.Register(opts.Registerer, s.ops)
	s.counts = make(map[string]*opCounts, len(countedOps))
	for _, op := range countedOps {
		s.counts[op] = new(opCounts)
	}
	return s
}

// countedOps are the op label values; opResults the result label values,
// in the order of an opCounts.
var (
	countedOps = []string{"create", "wrap", "unwrap", "rotate"}
	opResults  = [...]string{"ok", "client_error", "error"}
)

// opCounts are the counters of one op by result, each resolved with
// WithLabelValues on its first use only: Wrap and Unwrap are the KMS
// shim's hot path, and WithLabelValues hashes the labels and takes a lock
// on every call. Resolving on first use rather than in New keeps /metrics
// showing only the series that have counted something, as before.
type opCounts [len(opResults)]atomic.Pointer[metrics.Counter]

func (s *Service) count(op string, err error) {
	result := 0 // ok
	if err != nil {
		result = 2 // error
		if api.ErrorFor(err).Status < 500 {
			result = 1 // client_error
		}
	}
	oc := s.counts[op]
	if oc == nil {
		s.ops.WithLabelValues(op, opResults[result]).Inc()
		return
	}
	c := oc[result].Load()
	if c == nil {
		cc := s.ops.WithLabelValues(op, opResults[result])
		c = &cc
		oc[result].Store(c)
	}
	(*c).Inc()
}

// KeyID returns the public identifier of version version of KEK name kept
// in custody under ref: 32 hex characters of SHA-256 over a domain string,
// the name, the version and the ref.
func KeyID(name string, version int, ref string) string {
	h := sha256.New()
	h.Write([]byte(keyIDDomain))
	for _, f := range []string{name, strconv.Itoa(version), ref} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// ValidateName returns an *api.Error (400 invalid_key_name) unless name is
// 1 to MaxNameLength characters of letters, digits, '.', '_' and '-',
// starting with a letter or digit.
func ValidateName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLength || !validName(name) {
		return api.Invalid(CodeInvalidKeyName, "name",
			fmt.Sprintf("a key name is 1 to %d letters, digits, '.', '_' or '-', starting with a letter or digit", MaxNameLength))
	}
	return nil
}

func keyNotFound(name string, err error) error {
	return api.New(http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("key %q not found", name)).Wrap(err)
}

// newVersion creates a KEK in custody for version v of name and returns its
// record. The ref carries a random suffix so that a retry after a failure,
// or two instances racing, never collide in custody.
func (s *Service) newVersion(ctx context.Context, name string, v int) (store.KEKVersion, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return store.KEKVersion{}, fmt.Errorf("generate key ref: %w", err)
	}
	ref := fmt.Sprintf("kek/%s/v%d/%s", name, v, hex.EncodeToString(rnd[:]))
	if err := s.custody.GenerateKEK(ctx, ref); err != nil {
		return store.KEKVersion{}, fmt.Errorf("generate KEK %q version %d: %w", name, v, err)
	}
	return store.KEKVersion{
		Name:      name,
		Version:   v,
		KeyRef:    ref,
		KeyID:     KeyID(name, v, ref),
		CreatedAt: s.now().UTC().Truncate(time.Second),
	}, nil
}

// kept logs a new KEK version kept in custody after a store write of
// unknown outcome: the write may have committed, so destroying the key
// could destroy a KEK in use. The reconciler (pkg/reconcile) destroys it
// once it is old and no version names it.
func (s *Service) kept(v store.KEKVersion, op string, err error) {
	s.log.Warn("KEK "+op+" failed with an unknown outcome; the new key is kept",
		"key", v.Name, "version", v.Version, "ref", v.KeyRef, "err", err)
}

// destroy removes a custody key that no store record points to.
func (s *Service) destroy(ref string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.custody.Destroy(ctx, ref); err != nil {
		s.log.Warn("could not destroy an unused KEK", "ref", ref, "err", err)
	}
}

// Create creates the KEK name owned by project with its first version and
// returns it with created true. When name exists and belongs to project it
// returns the existing KEK and its active version with created false; when it
// belongs to another project it fails with an error wrapping
// api.ErrConflict.
func (s *Service) Create(ctx context.Context, name, project string) (k store.KEK, v store.KEKVersion, created bool, err error) {
	defer func() { s.count("create", err) }()
	if err := ValidateName(name); err != nil {
		return store.KEK{}, store.KEKVersion{}, false, err
	}
	k, v, err = s.existing(ctx, name, project)
	if err == nil {
		return k, v, false, nil
	}
	if !errors.Is(err, api.ErrNotFound) {
		return store.KEK{}, store.KEKVersion{}, false, err
	}
	first, err := s.newVersion(ctx, name, 1)
	if err != nil {
		return store.KEK{}, store.KEKVersion{}, false, err
	}
	k = store.KEK{Name: name, Project: project, ActiveVersion: 1, CreatedAt: first.CreatedAt}
	if err := s.st.CreateKEK(ctx, k, first); err != nil {
		if !store.NotWritten(err) {
			s.kept(first, "create", err)
			return store.KEK{}, store.KEKVersion{}, false, fmt.Errorf("store KEK %q: %w", name, err)
		}
		s.destroy(first.KeyRef)
		if errors.Is(err, api.ErrConflict) {
			// Another instance created it first.
			k, v, err = s.existing(ctx, name, project)
			if err != nil {
				return store.KEK{}, store.KEKVersion{}, false, err
			}
			return k, v, false, nil
		}
		return store.KEK{}, store.KEKVersion{}, false, fmt.Errorf("store KEK %q: %w", name, err)
	}
	s.log.Info("KEK created", "key", name, "project", project, "key_id", first.KeyID)
	s.remember(k, first)
	return k, first, true, nil
}

// existing returns KEK name and its active version if it belongs to project.
func (s *Service) existing(ctx context.Context, name, project string) (store.KEK, store.KEKVersion, error) {
	k, err := s.st.KEK(ctx, name)
	if err != nil {
		return store.KEK{}, store.KEKVersion{}, fmt.Errorf("read KEK %q: %w", name, err)
	}
	if k.Project != project {
		return store.KEK{}, store.KEKVersion{}, api.New(http.StatusConflict, api.CodeConflict,
			fmt.Sprintf("key %q already exists in another project", name)).Wrap(api.ErrConflict)
	}
	v, err := s.version(ctx, name, k.ActiveVersion)
	if err != nil {
		return store.KEK{}, store.KEKVersion{}, err
	}
	return k, v, nil
}

func (s *Service) remember(k store.KEK, v store.KEKVersion) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ttl > 0 {
		s.active[k.Name] = activeEntry{kek: k, version: v, expires: s.now().Add(s.ttl)}
	}
	s.rememberVersionLocked(v)
}

func (s *Service) rememberVersionLocked(v store.KEKVersion) {
	if len(s.versions) >= versionCache {
		clear(s.versions)
	}
	s.versions[versionKey{v.Name, v.Version}] = v
}

// version returns a version record; they never change, so they are cached.
func (s *Service) version(ctx context.Context, name string, version int) (store.KEKVersion, error) {
	s.mu.Lock()
	v, ok := s.versions[versionKey{name, version}]
	s.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := s.st.KEKVersion(ctx, name, version)
	if err != nil {
		return store.KEKVersion{}, fmt.Errorf("read KEK %q version %d: %w", name, version, err)
	}
	s.mu.Lock()
	s.rememberVersionLocked(v)
	s.mu.Unlock()
	return v, nil
}

// lookup returns KEK name and its active version, from the cache when fresh.
func (s *Service) lookup(ctx context.Context, name string) (store.KEK, store.KEKVersion, error) {
	if err := ValidateName(name); err != nil {
		return store.KEK{}, store.KEKVersion{}, err
	}
	now := s.now()
	s.mu.Lock()
	e, ok := s.active[name]
	s.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.kek, e.version, nil
	}
	k, err := s.st.KEK(ctx, name)
	if err != nil {
		if errors.Is(err, api.ErrNotFound) {
			return store.KEK{}, store.KEKVersion{}, keyNotFound(name, err)
		}
		return store.KEK{}, store.KEKVersion{}, fmt.Errorf("read KEK %q: %w", name, err)
	}
	v, err := s.version(ctx, name, k.ActiveVersion)
	if err != nil {
		return store.KEK{}, store.KEKVersion{}, err
	}
	s.remember(k, v)
	return k, v, nil
}

// Active returns the active version of KEK name (404 when absent). It reads
// the store at most once per ActiveTTL.
func (s *Service) Active(ctx context.Context, name string) (store.KEKVersion, error) {
	_, v, err := s.lookup(ctx, name)
	return v, err
}

// Key returns KEK name and every version of it, in the store's order (404
// when absent). It always reads the store.
func (s *Service) Key(ctx context.Context, name string) (store.KEK, []store.KEKVersion, error) {
	if err := ValidateName(name); err != nil {
		return store.KEK{}, nil, err
	}
	k, err := s.st.KEK(ctx, name)
	if err != nil {
		if errors.Is(err, api.ErrNotFound) {
			return store.KEK{}, nil, keyNotFound(name, err)
		}
		return store.KEK{}, nil, fmt.Errorf("read KEK %q: %w", name, err)
	}
	vs, err := s.st.KEKVersions(ctx, name)
	if err != nil {
		return store.KEK{}, nil, fmt.Errorf("read versions of KEK %q: %w", name, err)
	}
	return k, vs, nil
}

// Project returns the project owning KEK name, from the cache when fresh
// (404 when absent). Routes use it to authorize.
func (s *Service) Project(ctx context.Context, name string) (string, error) {
	k, _, err := s.lookup(ctx, name)
	return k.Project, err
}

func header(version int) []byte {
	h := make([]byte, HeaderSize)
	h[0] = formatV1
	binary.BigEndian.PutUint32(h[1:], uint32(version))
	return h
}

// boundAAD is the associated data the custody seals with: the domain, the
// header, the length-prefixed KEK name and the caller's aad.
func boundAAD(hdr []byte, name string, aad []byte) []byte {
	b := make([]byte, 0, len(aadDomain)+1+len(hdr)+4+len(name)+len(aad))
	b = append(b, aadDomain...)
	b = append(b, 0)
	b = append(b, hdr...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
	b = append(b, name...)
	return append(b, aad...)
}

func checkAAD(aad []byte) error {
	if len(aad) > MaxAAD {
		return api.Invalid(CodeAADTooLarge, "aad", fmt.Sprintf("aad is %d bytes; at most %d are accepted", len(aad), MaxAAD))
	}
	return nil
}

func decryptFailed(err error) error {
	return api.New(http.StatusBadRequest, CodeDecryptFailed,
		"the ciphertext does not decrypt under this key with this aad").Wrap(err)
}

// Wrap encrypts plaintext under the active version of KEK name, binding aad,
// and returns the ciphertext and the version used. Plaintexts over the
// Service's limit give 413 plaintext_too_large, aad over MaxAAD 400
// aad_too_large, a missing KEK 404.
func (s *Service) Wrap(ctx context.Context, name string, plaintext, aad []byte) (ciphertext []byte, v store.KEKVersion, err error) {
	defer func() { s.count("wrap", err) }()
	if len(plaintext) > s.maxPT {
		return nil, store.KEKVersion{}, &api.Error{
			Status: http.StatusRequestEntityTooLarge, Code: CodePlaintextTooLarge,
			Detail: fmt.Sprintf("plaintext is %d bytes; at most %d are accepted", len(plaintext), s.maxPT),
			Fields: []api.FieldError{{Code: CodePlaintextTooLarge, Field: "plaintext", Message: fmt.Sprintf("at most %d bytes", s.maxPT)}},
		}
	}
	if err := checkAAD(aad); err != nil {
		return nil, store.KEKVersion{}, err
	}
	_, v, err = s.lookup(ctx, name)
	if err != nil {
		return nil, store.KEKVersion{}, err
	}
	if v.Version <= 0 || v.Version >= maxVersions {
		return nil, store.KEKVersion{}, fmt.Errorf("KEK %q has active version %d out of range", name, v.Version)
	}
	hdr := header(v.Version)
	sealed, err := s.custody.Seal(ctx, v.KeyRef, plaintext, boundAAD(hdr, name, aad))
	if err != nil {
		return nil, store.KEKVersion{}, fmt.Errorf("wrap with KEK %q version %d: %w", name, v.Version, err)
	}
	return append(hdr, sealed...), v, nil
}

// ParseHeader returns the KEK version a ciphertext names. It fails with an
// error wrapping ErrDecrypt (400 decrypt_failed) when the ciphertext is too
// short or has an unknown format.
func ParseHeader(ciphertext []byte) (version int, err error) {
	if len(ciphertext) < HeaderSize || ciphertext[0] != formatV1 {
		return 0, decryptFailed(fmt.Errorf("ciphertext has no valid header: %w", ErrDecrypt))
	}
	v := binary.BigEndian.Uint32(ciphertext[1:HeaderSize])
	if v == 0 || v >= maxVersions {
		return 0, decryptFailed(fmt.Errorf("ciphertext names version %d: %w", v, ErrDecrypt))
	}
	return int(v), nil
}

// Unwrap decrypts what Wrap returned for KEK name and aad, with the version
// the ciphertext names, and returns the plaintext and that version. A
// tampered ciphertext or another aad gives 400 decrypt_failed (wrapping
// ErrDecrypt), a version that does not exist 400 unknown_key_version, a
// missing KEK 404.
func (s *Service) Unwrap(ctx context.Context, name string, ciphertext, aad []byte) (plaintext []byte, v store.KEKVersion, err error) {
	defer func() { s.count("unwrap", err) }()
	if err := ValidateName(name); err != nil {
		return nil, store.KEKVersion{}, err
	}
	if err := checkAAD(aad); err != nil {
		return nil, store.KEKVersion{}, err
	}
	version, err := ParseHeader(ciphertext)
	if err != nil {
		return nil, store.KEKVersion{}, err
	}
	v, err = s.version(ctx, name, version)
	if err != nil {
		if !errors.Is(err, api.ErrNotFound) {
			return nil, store.KEKVersion{}, err
		}
		if _, _, kerr := s.lookup(ctx, name); kerr != nil {
			return nil, store.KEKVersion{}, kerr
		}
		return nil, store.KEKVersion{}, api.Invalid(CodeUnknownKeyVersion, "ciphertext",
			fmt.Sprintf("the ciphertext names version %d of key %q, which does not exist", version, name)).Wrap(err)
	}
	plaintext, err = s.custody.Open(ctx, v.KeyRef, ciphertext[HeaderSize:], boundAAD(ciphertext[:HeaderSize], name, aad))
	if err != nil {
		if errors.Is(err, ErrDecrypt) {
			return nil, store.KEKVersion{}, decryptFailed(err)
		}
		return nil, store.KEKVersion{}, fmt.Errorf("unwrap with KEK %q version %d: %w", name, version, err)
	}
	return plaintext, v, nil
}

// Rotate makes a new version of KEK name active, provided the active version
// is expected (0 means whatever is active now), and returns it. A stale
// expected gives 409 generation_mismatch; older versions keep unwrapping.
func (s *Service) Rotate(ctx context.Context, name string, expected int) (v store.KEKVersion, err error) {
	defer func() { s.count("rotate", err) }()
	if err := ValidateName(name); err != nil {
		return store.KEKVersion{}, err
	}
	if expected < 0 {
		return store.KEKVersion{}, api.Invalid(api.CodeInvalidField, "expected_version", "expected_version must be positive")
	}
	k, err := s.st.KEK(ctx, name)
	if err != nil {
		if errors.Is(err, api.ErrNotFound) {
			return store.KEKVersion{}, keyNotFound(name, err)
		}
		return store.KEKVersion{}, fmt.Errorf("read KEK %q: %w", name, err)
	}
	if expected == 0 {
		expected = k.ActiveVersion
	}
	if expected != k.ActiveVersion {
		return store.KEKVersion{}, fmt.Errorf("rotate KEK %q: expected version %d, active is %d: %w",
			name, expected, k.ActiveVersion, api.ErrGenerationMismatch)
	}
	if expected+1 >= maxVersions {
		return store.KEKVersion{}, api.New(http.StatusConflict, api.CodeConflict, "the key has reached its last version")
	}
	next, err := s.newVersion(ctx, name, expected+1)
	if err != nil {
		return store.KEKVersion{}, err
	}
	if err := s.st.RotateKEK(ctx, name, expected, next); err != nil {
		if store.NotWritten(err) {
			s.destroy(next.KeyRef)
		} else {
			s.kept(next, "rotate", err)
		}
		return store.KEKVersion{}, fmt.Errorf("rotate KEK %q: %w", name, err)
	}
	k.ActiveVersion = next.Version
	s.remember(k, next)
	s.log.Info("KEK rotated", "key", name, "version", next.Version, "key_id", next.KeyID)
	return next, nil
}
