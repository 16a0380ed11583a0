// Package ca is the cluster certificate authority: it creates, shows and
// rotates (rekeys) a cluster's CA and signs certificate signing requests
// under a fixed policy.
//
// # State
//
// An Authority keeps nothing that matters in memory: clusters and CA
// generations live in a Store, private keys in Keys (key custody), so any
// number of instances may serve the same clusters. The only memory is a
// small cache of loaded signing keys, keyed by their immutable key
// references.
//
// # Rekey
//
// A rekey generates a new key and self-signed certificate for generation
// n+1 and stores both completely before Store.Rekey moves the generation
// pointer with a compare-and-swap. If the swap loses, the new key is
// destroyed, so no key is orphaned in custody, and the caller gets 409
// generation_mismatch. The new key is destroyed only when the store says
// for sure that nothing was written (store.NotWritten); after an error of
// unknown outcome (a dropped connection, a cancelled request) it is kept,
// since the write may have committed, and the reconciler (pkg/reconcile)
// destroys it later if no generation names it.
//
// # Policy
//
// See Policy in policy.go and DESIGN.md "What the CA signs": the CSR's
// signature must verify, its key must be strong, the issued certificate is
// never a CA, carries only the profile's extensions, has a 128-bit random
// serial and never outlives its CA; O=system:masters needs the admin role.
//
// # HTTP
//
// Routes publishes the native API; pkg/magnum builds the Magnum-compatible
// one on top of the exported methods.
package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // RFC 5280 §4.2.1.2 method 1 key identifiers.
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	promreg "github.com/clusterkeys/clusterkeys/pkg/metrics"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// Defaults of Options.
const (
	// DefaultCAValidityDays is the validity of a CA created without
	// validity_days: ten years, like Magnum's.
	DefaultCAValidityDays = 3650
	// MaxCAValidityDays bounds validity_days (30 years).
	MaxCAValidityDays = 10950
	// DefaultKeyAlgorithm is the CA key algorithm when none is asked for.
	DefaultKeyAlgorithm = keys.ECDSAP256
	// DefaultServerValidity is the default validity of server and peer
	// certificates.
	DefaultServerValidity = 8760 * time.Hour
	// DefaultClientValidity is the default validity of client certificates.
	DefaultClientValidity = 720 * time.Hour
	// DefaultMaxValidity bounds validity_hours (two years).
	DefaultMaxValidity = 2 * 8760 * time.Hour
	// MaxGracePeriod bounds grace_period_seconds of a rekey (90 days).
	MaxGracePeriod = 90 * 24 * time.Hour
	// DefaultSignerCacheSize is how many loaded signing keys are cached.
	DefaultSignerCacheSize = 256
	// clockSkew backdates NotBefore so that clients whose clocks lag a
	// little accept a fresh certificate.
	clockSkew = time.Minute
)

// Options configure an Authority. The zero value is usable.
type Options struct {
	// Now returns the current time; time.Now when nil. Tests set it.
	Now func() time.Time
	// Registerer receives the CA metrics; none are exported when nil.
	Registerer promreg.Registerer
	// Logger logs operations (never key material); slog.Default when nil.
	Logger *slog.Logger
	// CAValidityDays is the default CA validity; DefaultCAValidityDays when 0.
	CAValidityDays int
	// KeyAlgorithm is the default CA key algorithm; DefaultKeyAlgorithm
	// when empty.
	KeyAlgorithm keys.Algorithm
	// ServerValidity is the default validity of server and peer
	// certificates; DefaultServerValidity when 0.
	ServerValidity time.Duration
	// ClientValidity is the default validity of client certificates;
	// DefaultClientValidity when 0.
	ClientValidity time.Duration
	// MaxValidity bounds the validity a signer may ask for;
	// DefaultMaxValidity when 0.
	MaxValidity time.Duration
	// SignerCacheSize is how many loaded signing keys are kept;
	// DefaultSignerCacheSize when 0, no cache when negative.
	SignerCacheSize int
}

// Authority is a cluster certificate authority over a metadata store and
// key custody. It is safe for concurrent use.
type Authority struct {
	st      Store
	keys    Keys
	opts    Options
	log     *slog.Logger
	metrics *metrics
	signers *signerCache
}

// New returns an Authority that keeps its state in st and its keys in k.
func New(st Store, k Keys, opts Options) *Authority {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CAValidityDays <= 0 {
		opts.CAValidityDays = DefaultCAValidityDays
	}
	if opts.KeyAlgorithm == "" {
		opts.KeyAlgorithm = DefaultKeyAlgorithm
	}
	if opts.ServerValidity <= 0 {
		opts.ServerValidity = DefaultServerValidity
	}
	if opts.ClientValidity <= 0 {
		opts.ClientValidity = DefaultClientValidity
	}
	if opts.MaxValidity <= 0 {
		opts.MaxValidity = DefaultMaxValidity
	}
	if opts.SignerCacheSize == 0 {
		opts.SignerCacheSize = DefaultSignerCacheSize
	}
	a := &Authority{
		st:      st,
		keys:    k,
		opts:    opts,
		log:     opts.Logger,
		signers: newSignerCache(opts.SignerCacheSize),
	}
	a.metrics = newMetrics(opts.Registerer, a.log)
	return a
}

// CreateRequest is the body of PUT /v1/clusters/{cluster}/ca. Every field is
// optional.
type CreateRequest struct {
	// KeyAlgorithm is one of keys.Algorithms; Options.KeyAlgorithm when empty.
	KeyAlgorithm string `json:"key_algorithm,omitempty"`
	// CommonName is the CA's subject CN; the cluster name when empty.
	CommonName string `json:"common_name,omitempty"`
	// ValidityDays is the CA's validity; Options.CAValidityDays when 0.
	ValidityDays int `json:"validity_days,omitempty"`
	// ProjectID owns the cluster; the caller's project when empty. Only
	// an admin may name another project.
	ProjectID string `json:"project_id,omitempty"`
}

// RekeyRequest is the body of POST /v1/clusters/{cluster}/ca/rekey. Every
// field is optional.
type RekeyRequest struct {
	// ExpectedGeneration, when set, must be the active generation, else the
	// rekey fails with 409 generation_mismatch.
	ExpectedGeneration *int `json:"expected_generation,omitempty"`
	// GracePeriodSeconds is how long the replaced CA stays in the trust
	// bundle; 0 (the default, Magnum's semantics) removes it at once.
	GracePeriodSeconds *int64 `json:"grace_period_seconds,omitempty"`
}

// Resource is the CA of a cluster as the API shows it.
type Resource struct {
	Cluster    string `json:"cluster"`
	Generation int    `json:"generation"`
	// Certificate is the active CA certificate, PEM.
	Certificate string `json:"certificate"`
	// TrustBundle is the PEM of every CA a client should trust now: the
	// active one first, then retired ones still within their grace period.
	TrustBundle  string    `json:"trust_bundle"`
	KeyAlgorithm string    `json:"key_algorithm"`
	NotBefore    time.Time `json:"not_before"`
	NotAfter     time.Time `json:"not_after"`
	// FingerprintSHA256 is the lowercase hex SHA-256 of the certificate's DER.
	FingerprintSHA256 string `json:"fingerprint_sha256"`
}

// ValidateClusterName returns a 400 invalid_field error unless name is 1 to
// 63 characters of [A-Za-z0-9._-] starting with a letter or digit (Magnum's
// UUIDs and names fit).
func ValidateClusterName(name string) error {
	if !validClusterName(name) {
		return api.Invalid(api.CodeInvalidField, "cluster",
			"cluster must be 1 to 63 characters of A-Z a-z 0-9 . _ - starting with a letter or digit")
	}
	return nil
}

// validClusterName is ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ written out: a
// regexp compiled at package init cost every function's cold start (its
// bounded repetition expands to 63 states).
func validClusterName(name string) bool {
	if len(name) == 0 || len(name) > 63 || !isAlnum(name[0]) {
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

func principal(ctx context.Context) (auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return auth.Principal{}, fmt.Errorf("no authenticated principal in the request context: %w", api.ErrUnauthenticated)
	}
	return p, nil
}

func caNotFound(cluster string, err error) error {
	return api.New(http.StatusNotFound, api.CodeCANotFound,
		fmt.Sprintf("cluster %q has no CA", cluster)).Wrap(err)
}

// cluster reads a cluster, mapping absence to 404 ca_not_found.
func (a *Authority) cluster(ctx context.Context, name string) (store.Cluster, error) {
	c, err := a.st.Cluster(ctx, name)
	if errors.Is(err, api.ErrNotFound) {
		return store.Cluster{}, caNotFound(name, err)
	}
	if err != nil {
		return store.Cluster{}, fmt.Errorf("read cluster %q: %w", name, err)
	}
	return c, nil
}

// lookup returns the principal of ctx and the record of cluster, once its
// name is valid (errors as principal, ValidateClusterName and cluster give
// them, in that order).
func (a *Authority) lookup(ctx context.Context, cluster string) (auth.Principal, store.Cluster, error) {
	p, err := principal(ctx)
	if err != nil {
		return auth.Principal{}, store.Cluster{}, err
	}
	if err := ValidateClusterName(cluster); err != nil {
		return auth.Principal{}, store.Cluster{}, err
	}
	c, err := a.cluster(ctx, cluster)
	if err != nil {
		return auth.Principal{}, store.Cluster{}, err
	}
	return p, c, nil
}

// readable returns the record of cluster for a read: lookup, then it
// refuses a principal that may not read the cluster's project.
func (a *Authority) readable(ctx context.Context, cluster string) (store.Cluster, error) {
	p, c, err := a.lookup(ctx, cluster)
	if err != nil {
		return store.Cluster{}, err
	}
	if err := p.AuthorizeRead(c.Project); err != nil {
		return store.Cluster{}, err
	}
	return c, nil
}

// normalize fills the defaults of a create request and checks its fields.
func (a *Authority) normalize(cluster string, p auth.Principal, req CreateRequest) (CreateRequest, error) {
	if req.KeyAlgorithm == "" {
		req.KeyAlgorithm = string(a.opts.KeyAlgorithm)
	}
	if _, err := keys.ParseAlgorithm(req.KeyAlgorithm); err != nil {
		return req, api.Invalid(api.CodeInvalidAlgorithm, "key_algorithm",
			fmt.Sprintf("key_algorithm must be one of %v", keys.Algorithms))
	}
	if req.CommonName == "" {
		req.CommonName = cluster
	}
	if len(req.CommonName) > 64 {
		return req, api.Invalid(api.CodeInvalidField, "common_name", "common_name must be at most 64 bytes")
	}
	if err := CheckName("common_name", req.CommonName); err != nil {
		return req, err
	}
	if req.ValidityDays == 0 {
		req.ValidityDays = a.opts.CAValidityDays
	}
	if req.ValidityDays < 1 || req.ValidityDays > MaxCAValidityDays {
		return req, api.Invalid(api.CodeInvalidField, "validity_days",
			fmt.Sprintf("validity_days must be between 1 and %d", MaxCAValidityDays))
	}
	project, err := p.AuthorizeCreate(req.ProjectID)
	if err != nil {
		return req, fmt.Errorf("create the CA of cluster %q: %w", cluster, err)
	}
	req.ProjectID = project
	return req, nil
}

// sameParameters reports whether an existing cluster was created with the
// parameters of req (already normalized). The project is compared only
// when the caller named one.
func sameParameters(c store.Cluster, req CreateRequest, projectGiven bool) bool {
	return c.KeyAlgorithm == req.KeyAlgorithm && c.CommonName == req.CommonName &&
		c.ValidityDays == req.ValidityDays && (!projectGiven || c.Project == req.ProjectID)
}

// CreateCA creates the CA of cluster. Asking again with the same parameters
// returns the existing CA with created false; other parameters fail with
// 409 ca_exists. Of two concurrent creates one wins; the other destroys the
// key it generated and answers like a repeated request.
func (a *Authority) CreateCA(ctx context.Context, cluster string, req CreateRequest) (res Resource, created bool, err error) {
	defer func() { a.metrics.create(created, err) }()
	p, err := principal(ctx)
	if err != nil {
		return Resource{}, false, err
	}
	if err := ValidateClusterName(cluster); err != nil {
		return Resource{}, false, err
	}
	projectGiven := req.ProjectID != ""
	req, err = a.normalize(cluster, p, req)
	if err != nil {
		return Resource{}, false, err
	}
	c, err := a.st.Cluster(ctx, cluster)
	switch {
	case err == nil:
		res, err := a.existing(ctx, p, c, req, projectGiven)
		return res, false, err
	case !errors.Is(err, api.ErrNotFound):
		return Resource{}, false, fmt.Errorf("read cluster %q: %w", cluster, err)
	}

	now := a.now()
	alg := keys.Algorithm(req.KeyAlgorithm)
	gen, err := a.newGeneration(ctx, cluster, 1, alg, req.CommonName, req.ValidityDays, now)
	if err != nil {
		return Resource{}, false, err
	}
	c = store.Cluster{
		Name: cluster, Project: req.ProjectID, Generation: 1,
		KeyAlgorithm: req.KeyAlgorithm, CommonName: req.CommonName,
		ValidityDays: req.ValidityDays, CreatedAt: now,
	}
	if err := a.st.CreateCluster(ctx, c, gen); err != nil {
		if !store.NotWritten(err) {
			if !a.stored(ctx, cluster, gen.KeyRef) {
				// The write may still have committed: keep the key. The
				// reconciler destroys it once it is old and unreferenced.
				a.log.Warn("cluster creation failed with an unknown outcome; the new CA key is kept",
					"cluster", cluster, "key_ref", gen.KeyRef, "err", err)
				return Resource{}, false, fmt.Errorf("store cluster %q: %w", cluster, err)
			}
			// The store committed although it reported an error.
			a.log.Warn("cluster creation reported an error but was stored", "cluster", cluster, "err", err)
		} else {
			a.destroy(ctx, gen.KeyRef)
			if !errors.Is(err, api.ErrConflict) {
				return Resource{}, false, fmt.Errorf("store cluster %q: %w", cluster, err)
			}
			// Lost a race with another create: answer like a repeat.
			c, err := a.st.Cluster(ctx, cluster)
			if err != nil {
				return Resource{}, false, fmt.Errorf("re-read cluster %q after a concurrent create: %w", cluster, err)
			}
			res, err := a.existing(ctx, p, c, req, projectGiven)
			return res, false, err
		}
	}
	a.log.Info("CA created", "cluster", cluster, "project", c.Project, "user", p.User,
		"key_algorithm", c.KeyAlgorithm, "generation", 1)
	res, err = a.resource(ctx, c)
	return res, err == nil, err
}

// existing answers a create of a cluster that exists.
func (a *Authority) existing(ctx context.Context, p auth.Principal, c store.Cluster, req CreateRequest, projectGiven bool) (Resource, error) {
	if err := p.AuthorizeWrite(c.Project); err != nil {
		return Resource{}, err
	}
	if !sameParameters(c, req, projectGiven) {
		return Resource{}, api.New(http.StatusConflict, api.CodeCAExists,
			fmt.Sprintf("cluster %q already has a CA created with other parameters", c.Name))
	}
	return a.resource(ctx, c)
}

// CA returns the CA of cluster.
func (a *Authority) CA(ctx context.Context, cluster string) (Resource, error) {
	c, err := a.readable(ctx, cluster)
	if err != nil {
		return Resource{}, err
	}
	return a.resource(ctx, c)
}

// Rekey replaces the CA of cluster by a new key and certificate, generation
// + 1, and returns the new CA. The replaced CA leaves the trust bundle after
// the grace period (at once by default) and the certificates it signed are
// marked revoked then.
func (a *Authority) Rekey(ctx context.Context, cluster string, req RekeyRequest) (res Resource, err error) {
	defer func() { a.metrics.rekey(err) }()
	p, err := principal(ctx)
	if err != nil {
		return Resource{}, err
	}
	if err := ValidateClusterName(cluster); err != nil {
		return Resource{}, err
	}
	var grace time.Duration
	if req.GracePeriodSeconds != nil {
		s := *req.GracePeriodSeconds
		if s < 0 || s > int64(MaxGracePeriod/time.Second) {
			return Resource{}, api.Invalid(api.CodeInvalidField, "grace_period_seconds",
				fmt.Sprintf("grace_period_seconds must be between 0 and %d", int64(MaxGracePeriod/time.Second)))
		}
		grace = time.Duration(s) * time.Second
	}
	if req.ExpectedGeneration != nil && *req.ExpectedGeneration < 1 {
		return Resource{}, api.Invalid(api.CodeInvalidField, "expected_generation", "expected_generation must be at least 1")
	}
	c, err := a.cluster(ctx, cluster)
	if err != nil {
		return Resource{}, err
	}
	if err := p.AuthorizeWrite(c.Project); err != nil {
		return Resource{}, err
	}
	expected := c.Generation
	if req.ExpectedGeneration != nil {
		expected = *req.ExpectedGeneration
	}
	if expected != c.Generation {
		return Resource{}, generationMismatch(cluster, expected, c.Generation, nil)
	}
	now := a.now()
	gen, err := a.newGeneration(ctx, cluster, expected+1, keys.Algorithm(c.KeyAlgorithm), c.CommonName, c.ValidityDays, now)
	if err != nil {
		return Resource{}, err
	}
	if err := a.st.Rekey(ctx, cluster, expected, gen, now, now.Add(grace)); err != nil {
		switch {
		case store.NotWritten(err):
			a.destroy(ctx, gen.KeyRef)
			if errors.Is(err, api.ErrGenerationMismatch) {
				return Resource{}, generationMismatch(cluster, expected, 0, err)
			}
			return Resource{}, fmt.Errorf("rekey cluster %q to generation %d: %w", cluster, gen.Generation, err)
		case !a.stored(ctx, cluster, gen.KeyRef):
			// The write may still have committed: keep the key. The
			// reconciler destroys it once it is old and unreferenced.
			a.log.Warn("rekey failed with an unknown outcome; the new CA key is kept",
				"cluster", cluster, "generation", gen.Generation, "key_ref", gen.KeyRef, "err", err)
			return Resource{}, fmt.Errorf("rekey cluster %q to generation %d: %w", cluster, gen.Generation, err)
		}
		a.log.Warn("rekey reported an error but was stored", "cluster", cluster, "err", err)
	}
	a.log.Info("CA rekeyed", "cluster", cluster, "project", c.Project, "user", p.User,
		"generation", gen.Generation, "grace_period_seconds", int64(grace/time.Second))
	if grace > 0 {
		// The retired CA stays trusted for the grace: its CRL must outlive
		// the key destroyed below.
		a.lastCRL(ctx, cluster, gen.Generation, expected, now.Add(grace))
	}
	a.destroyRetired(ctx, cluster, gen.Generation)
	c.Generation = gen.Generation
	return a.resource(ctx, c)
}

func generationMismatch(cluster string, expected, actual int, err error) error {
	detail := fmt.Sprintf("cluster %q is not at generation %d", cluster, expected)
	if actual > 0 {
		detail = fmt.Sprintf("cluster %q is at generation %d, not %d", cluster, actual, expected)
	}
	if err == nil {
		err = api.ErrGenerationMismatch
	}
	return api.New(http.StatusConflict, api.CodeGenerationMismatch, detail).Wrap(err)
}

// stored reports whether the generation with keyRef is in the store, after
// a store error of unknown outcome. False means "not seen", not "not
// written": a read error, or a commit still in flight, also answers false,
// so the caller keeps the key either way and only uses the answer to tell
// the client the truth. The request may have been cancelled; the read gets
// its own short deadline.
func (a *Authority) stored(ctx context.Context, cluster, keyRef string) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	gens, err := a.st.Generations(ctx, cluster)
	if err != nil {
		a.log.Warn("cannot tell whether a CA write committed", "cluster", cluster, "key_ref", keyRef, "err", err)
		return false
	}
	for _, g := range gens {
		if g.KeyRef == keyRef {
			return true
		}
	}
	return false
}

// destroyRetired destroys the key of the generation this rekey retired
// (active-1). Once the pointer has moved it signs nothing more (the point of
// a rekey after a user leaves: the old key cannot issue another
// credential); its certificate stays in the store for the trust bundle. A
// key that cannot be destroyed now (an error, or a crash before this runs)
// is destroyed by the reconciler (pkg/reconcile), which destroys the key of
// every retired generation.
func (a *Authority) destroyRetired(ctx context.Context, cluster string, active int) {
	// The next sign here reads the new generation; another instance
	// finds its remembered reading refused by the store.
	a.signers.forget(cluster)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	gens, err := a.st.Generations(ctx, cluster)
	if err != nil {
		a.log.Warn("cannot read the retired CA key to destroy; the reconciler will destroy it",
			"cluster", cluster, "err", err)
		return
	}
	for _, g := range gens {
		if g.Generation != active-1 {
			continue
		}
		a.signers.remove(g.KeyRef)
		if err := a.keys.Destroy(ctx, g.KeyRef); err != nil {
			a.log.Warn("cannot destroy a retired CA key; the reconciler will destroy it",
				"cluster", cluster, "generation", g.Generation, "key_ref", g.KeyRef, "err", err)
		}
	}
}

// destroy deletes a key that never became part of a stored CA.
func (a *Authority) destroy(ctx context.Context, ref string) {
	// The request may be cancelled; the clean-up must still run.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := a.keys.Destroy(ctx, ref); err != nil {
		a.log.Error("cannot destroy an unused CA key; it is orphaned in custody", "key_ref", ref, "err", err)
	}
}

func (a *Authority) now() time.Time { return a.opts.Now().UTC() }

// newKeyRef returns a fresh, never reused key reference.
func newKeyRef(cluster string, generation int) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("read random key reference: %w", err)
	}
	return fmt.Sprintf("ca/%s/%d/%s", cluster, generation, hex.EncodeToString(b[:])), nil
}

// newGeneration generates a CA key in custody and its self-signed
// certificate. On error no key is left behind.
func (a *Authority) newGeneration(ctx context.Context, cluster string, generation int, alg keys.Algorithm, cn string, days int, now time.Time) (store.CAGeneration, error) {
	gen, _, err := a.newCA(ctx, cluster, generation, alg, cn, days, now)
	return gen, err
}

// newCA is newGeneration that also returns the loaded CA, to sign with
// before the generation is stored (a reissue).
func (a *Authority) newCA(ctx context.Context, cluster string, generation int, alg keys.Algorithm, cn string, days int, now time.Time) (store.CAGeneration, caKey, error) {
	ref, err := newKeyRef(cluster, generation)
	if err != nil {
		return store.CAGeneration{}, caKey{}, err
	}
	signer, err := a.keys.GenerateSigner(ctx, ref, alg)
	if err != nil {
		return store.CAGeneration{}, caKey{}, fmt.Errorf("generate %s CA key for cluster %q: %w", alg, cluster, err)
	}
	der, cert, err := selfSign(signer, cn, now, days)
	if err != nil {
		a.destroy(ctx, ref)
		return store.CAGeneration{}, caKey{}, fmt.Errorf("self-sign CA of cluster %q generation %d: %w", cluster, generation, err)
	}
	return store.CAGeneration{
		Cluster: cluster, Generation: generation, KeyRef: ref, CertificateDER: der,
		KeyAlgorithm: string(alg), NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC(),
		CreatedAt: now,
	}, caKey{signer: signer, cert: cert, certPEM: certPEM(der)}, nil
}

// selfSign makes a CA certificate for signer.
func selfSign(signer crypto.Signer, cn string, now time.Time, days int) ([]byte, *x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	ski, err := keyID(signer.Public())
	if err != nil {
		return nil, nil, err
	}
	now = now.UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.AddDate(0, 0, days),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse the new certificate: %w", err)
	}
	return der, cert, nil
}

// randomSerial returns a positive 128-bit random serial number: all 128
// bits random, so DER may need a 17th (leading zero) octet, well within
// RFC 5280's 20. Zero, not a valid serial, is drawn again.
func randomSerial() (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("read random serial: %w", err)
		}
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
}

// keyID is the RFC 5280 §4.2.1.2 method 1 key identifier of pub: the SHA-1
// of its subjectPublicKey bit string.
func keyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	sum := sha1.Sum(spki.PublicKey.Bytes) //nolint:gosec // identifier, not a security function.
	return sum[:], nil
}

func pemCert(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// activeGeneration returns the active generation of c among gens.
func activeGeneration(c store.Cluster, gens []store.CAGeneration) (store.CAGeneration, error) {
	for _, g := range gens {
		if g.Generation == c.Generation {
			return g, nil
		}
	}
	return store.CAGeneration{}, fmt.Errorf("cluster %q: active generation %d missing from the store", c.Name, c.Generation)
}

// activeAndTrusted returns the active generation of c and the PEM trust
// bundle: the active CA first, then retired ones trusted after now.
func activeAndTrusted(c store.Cluster, gens []store.CAGeneration, now time.Time) (store.CAGeneration, string, error) {
	active, err := activeGeneration(c, gens)
	if err != nil {
		return store.CAGeneration{}, "", err
	}
	bundle := pemCert(active.CertificateDER)
	for _, g := range gens {
		if g.Generation != c.Generation && !g.TrustedUntil.IsZero() && g.TrustedUntil.After(now) {
			bundle += pemCert(g.CertificateDER)
		}
	}
	return active, bundle, nil
}

// resource builds the API view of c.
func (a *Authority) resource(ctx context.Context, c store.Cluster) (Resource, error) {
	now := a.now()
	gens, err := a.st.TrustedGenerations(ctx, c.Name, c.Generation, now)
	if err != nil {
		return Resource{}, fmt.Errorf("read trusted CA generations of cluster %q: %w", c.Name, err)
	}
	active, bundle, err := activeAndTrusted(c, gens, now)
	if err != nil {
		return Resource{}, err
	}
	sum := sha256.Sum256(active.CertificateDER)
	return Resource{
		Cluster:           c.Name,
		Generation:        active.Generation,
		Certificate:       pemCert(active.CertificateDER),
		TrustBundle:       bundle,
		KeyAlgorithm:      active.KeyAlgorithm,
		NotBefore:         active.NotBefore.UTC(),
		NotAfter:          active.NotAfter.UTC(),
		FingerprintSHA256: hex.EncodeToString(sum[:]),
	}, nil
}
