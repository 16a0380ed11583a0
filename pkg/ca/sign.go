package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	encasn1 "encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// SignRequest is the body of POST /v1/clusters/{cluster}/certificates.
type SignRequest struct {
	// CSR is a PEM CERTIFICATE REQUEST.
	CSR string `json:"csr"`
	// Profile is "client" (the default), "server" or "peer".
	Profile string `json:"profile,omitempty"`
	// ValidityHours is the certificate's validity; the profile's default
	// when 0, and never beyond the CA's own NotAfter.
	ValidityHours int `json:"validity_hours,omitempty"`
}

// SignResult is an issued certificate.
type SignResult struct {
	// Certificate is the issued certificate, PEM.
	Certificate string `json:"certificate"`
	// Serial is the lowercase hex serial number.
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
	// CAGeneration is the generation of the CA that signed.
	CAGeneration int `json:"ca_generation"`
	// CACertificate is the signing CA's certificate, PEM.
	CACertificate string `json:"ca_certificate"`
}

// Sign issues a certificate for the CSR of req with the active CA of
// cluster, under the policy, and records it in the store.
//
// A sign reuses the reading of the cluster (its policy and active CA) that
// the previous sign of the cluster recorded under, instead of reading the
// store first. Another instance may have changed it since (a rekey, a new
// policy): the store then refuses to record the certificate (it checks the
// generation and the policy in the recording write), nothing is handed
// out, and the sign forgets the reading and starts again from a fresh one.
func (a *Authority) Sign(ctx context.Context, cluster string, req SignRequest) (res SignResult, err error) {
	profileLabel := "invalid"
	defer func() { a.metrics.sign(profileLabel, err) }()
	p, err := principal(ctx)
	if err != nil {
		return SignResult{}, err
	}
	if err := ValidateClusterName(cluster); err != nil {
		return SignResult{}, err
	}
	if req.Profile == "" {
		req.Profile = string(ProfileClient)
	}
	profile, err := ParseProfile(req.Profile)
	if err != nil {
		return SignResult{}, err
	}
	profileLabel = string(profile)
	if req.CSR == "" {
		return SignResult{}, csrError(api.CodeInvalidCSR, "csr is required")
	}
	// Compared in whole hours: multiplying first would overflow
	// time.Duration for huge values and wrap to a short validity.
	if maxHours := int64(a.opts.MaxValidity / time.Hour); req.ValidityHours < 0 || int64(req.ValidityHours) > maxHours {
		return SignResult{}, api.Invalid(api.CodeInvalidField, "validity_hours",
			fmt.Sprintf("validity_hours must be between 1 and %d", maxHours))
	}
	if rows, key, ok := a.signers.active(cluster); ok {
		res, err := a.issue(ctx, p, req, profile, rows, &key)
		if !errors.Is(err, errStaleReading) {
			return res, err
		}
		a.signers.forget(cluster)
	}
	c, active, err := a.activeCA(ctx, cluster)
	if err != nil {
		return SignResult{}, err
	}
	// Remembered at once (when the key of active is loaded already), so
	// that a request refused by the policy does not leave the next sign
	// reading the store too; the record checks it either way.
	a.signers.remember(c, active)
	return a.issue(ctx, p, req, profile, activeRows{cluster: c, active: active}, nil)
}

// errStaleReading is the failure of a sign from a remembered reading of
// its cluster that is no longer true: Sign reads the cluster and signs
// again.
var errStaleReading = errors.New("the remembered reading of the cluster is stale")

// staleIfCached returns err, marked errStaleReading when it came from a
// remembered reading (cached is not nil), which may be out of date.
func staleIfCached(cached *caKey, err error) error {
	if cached != nil {
		return fmt.Errorf("%w: %w", errStaleReading, err)
	}
	return err
}

// issue signs and records the certificate of req as p asked for it, with
// the CA of rows. cached is the key of a remembered reading (nil: rows were
// just read from the store): the certificate is then recorded only if the
// cluster's generation and policy are still those of rows, and a failure
// that a stale reading explains is errStaleReading.
func (a *Authority) issue(ctx context.Context, p auth.Principal, req SignRequest, profile Profile, rows activeRows, cached *caKey) (SignResult, error) {
	c, active, cluster := rows.cluster, rows.active, rows.active.Cluster
	if err := p.AuthorizeWrite(c.Project); err != nil {
		return SignResult{}, err
	}
	csr, err := ParseCSR([]byte(req.CSR))
	if err != nil {
		return SignResult{}, err
	}
	// The subject's CN and O values, for every check below: listed once.
	names, err := subjectNames(csr)
	if err != nil {
		return SignResult{}, err // ParseCSR refused them already
	}
	if err := checkProfileNames(csr, names, profile, p.IsAdmin()); err != nil {
		return SignResult{}, err
	}
	if err := checkRequesterNames(names, profile, p.User, p.IsAdmin()); err != nil {
		return SignResult{}, err
	}
	// The policy and the CA's validity come from rows: a refusal they
	// explain is confirmed from a fresh reading before it is answered.
	if err := checkAllowedGroups(c.Policy, names, p.IsAdmin()); err != nil {
		return SignResult{}, staleIfCached(cached, err)
	}
	privAttr, _ := privilegedName(names) // only an admin gets this far with one

	now := a.now()
	notAfter, err := a.notAfter(a.validityFor(c.Policy, profile), profile, req.ValidityHours, now, active.NotAfter)
	if err != nil {
		return SignResult{}, staleIfCached(cached, err)
	}
	var key caKey
	if cached != nil {
		key = *cached
	} else if key, err = a.signer(ctx, active); err != nil {
		// A rekey that committed after we read the generations destroys
		// the key we were about to load: that is a retry, not a failure.
		if rerr := a.rekeyedSince(ctx, cluster, active.Generation); rerr != nil {
			return SignResult{}, rerr
		}
		return SignResult{}, err
	}
	tmpl, subject, err := leafTemplate(csr, profile, now, notAfter)
	if err != nil {
		return SignResult{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, key.cert, csr.PublicKey, key.signer)
	if err != nil {
		// A custody signer may have gone bad (an HSM session), or
		// another instance retired and destroyed the remembered key:
		// load it again next time.
		a.signers.remove(active.KeyRef)
		if cached != nil {
			return SignResult{}, staleIfCached(cached, fmt.Errorf("sign with generation %d: %w", active.Generation, err))
		}
		if rerr := a.rekeyedSince(ctx, cluster, active.Generation); rerr != nil {
			return SignResult{}, rerr
		}
		return SignResult{}, fmt.Errorf("sign certificate for cluster %q with generation %d: %w", cluster, active.Generation, err)
	}
	serial := hex.EncodeToString(tmpl.SerialNumber.Bytes())
	rec := store.IssuedCertificate{
		Cluster: cluster, Serial: serial, Generation: active.Generation,
		Subject: subject, Profile: string(profile),
		User: p.User, Project: p.Project,
		NotBefore: tmpl.NotBefore, NotAfter: tmpl.NotAfter, IssuedAt: now,
		Privileged: privAttr != "", CertificateDER: der,
		// A rekey that committed while this request signed would leave
		// the certificate outside the registry's revocation: the record
		// itself refuses it then (one write, no read after it), and a
		// rekey that commits after the record revokes it.
		RequireActive: true,
	}
	if cached != nil {
		// The policy checked above came from the remembered reading:
		// record only if it is still the cluster's.
		rec.RequirePolicy = &c.Policy
	}
	if err := a.st.RecordCertificate(ctx, rec); err != nil {
		if cached != nil && (errors.Is(err, api.ErrGenerationMismatch) || errors.Is(err, store.ErrPolicyChanged)) {
			return SignResult{}, staleIfCached(cached, err)
		}
		if errors.Is(err, api.ErrGenerationMismatch) {
			return SignResult{}, rekeyed(cluster).Wrap(err)
		}
		if errors.Is(err, api.ErrUserRevoked) {
			a.log.Warn("sign refused: user revoked", "cluster", cluster, "user", p.User, "project", p.Project)
			return SignResult{}, api.New(http.StatusForbidden, api.CodeUserRevoked,
				fmt.Sprintf("user %q is revoked on cluster %q; an admin may lift it", p.User, cluster)).Wrap(err)
		}
		return SignResult{}, fmt.Errorf("record certificate %s of cluster %q: %w", serial, cluster, err)
	}
	if cached == nil {
		a.signers.remember(c, active)
	}
	if rec.Privileged {
		// An admin issued a control-plane, node or otherwise powerful
		// identity: said at warn level, and marked in the registry.
		a.log.Warn("privileged certificate issued", "cluster", cluster, "generation", active.Generation,
			"serial", serial, "profile", profile, "subject", rec.Subject, "privileged_attribute", privAttr,
			"user", p.User, "project", p.Project, "not_after", tmpl.NotAfter)
	} else if a.log.Enabled(ctx, slog.LevelInfo) {
		// Typed attributes: nothing boxed per sign, and nothing built
		// when info is off; the line is the same.
		a.log.LogAttrs(ctx, slog.LevelInfo, "certificate issued", slog.String("cluster", cluster),
			slog.Int("generation", active.Generation), slog.String("serial", serial),
			slog.String("profile", string(profile)), slog.String("subject", rec.Subject),
			slog.String("user", p.User), slog.Time("not_after", tmpl.NotAfter))
	}
	return SignResult{
		Certificate:   certPEM(der),
		Serial:        serial,
		NotAfter:      tmpl.NotAfter,
		CAGeneration:  active.Generation,
		CACertificate: key.certPEM,
	}, nil
}

// notAfter returns the NotAfter of a certificate of profile asked for hours
// (0 = v's default) by a CA that expires at caNotAfter; v is the profile's
// validity on the cluster (validityFor).
func (a *Authority) notAfter(v validity, profile Profile, hours int, now, caNotAfter time.Time) (time.Time, error) {
	now = now.Truncate(time.Second)
	if !caNotAfter.After(now) {
		return time.Time{}, api.Invalid(api.CodeValidityTooLong, "validity_hours",
			"the cluster's CA has expired; rekey it")
	}
	if err := checkValidityHours(v, profile, hours); err != nil {
		return time.Time{}, err
	}
	if hours > 0 {
		na := now.Add(time.Duration(hours) * time.Hour)
		if na.After(caNotAfter) {
			return time.Time{}, api.Invalid(api.CodeValidityTooLong, "validity_hours",
				fmt.Sprintf("validity_hours exceeds the CA's remaining validity (%d hours)", int64(caNotAfter.Sub(now)/time.Hour)))
		}
		return na, nil
	}
	if na := now.Add(v.def); na.Before(caNotAfter) {
		return na, nil
	}
	return caNotAfter.UTC(), nil
}

// leafTemplate is the certificate issued for csr: the CSR's CN and O, the
// profile's key usages, SANs for server and peer, SKI (and the AKI that
// x509.CreateCertificate adds from the CA), never a CA and no other
// extension. subject is the template's Subject.String(), for the registry
// and the log; the template carries its subject encoded too (RawSubject,
// the bytes x509.CreateCertificate would marshal), so that the subject's
// RDN sequence is built once per sign, not twice.
func leafTemplate(csr *x509.CertificateRequest, profile Profile, now, notAfter time.Time) (tmpl *x509.Certificate, subject string, err error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, "", err
	}
	ski, err := csrKeyID(csr)
	if err != nil {
		return nil, "", err
	}
	name := pkix.Name{
		CommonName:   csr.Subject.CommonName,
		Organization: csr.Subject.Organization,
	}
	// What Name.String and x509.CreateCertificate each build from name
	// (which has no Names nor ExtraNames): its RDN sequence.
	rdns := name.ToRDNSequence()
	rawSubject, err := encasn1.Marshal(rdns)
	if err != nil {
		return nil, "", fmt.Errorf("encode the subject: %w", err)
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	var ext []x509.ExtKeyUsage
	switch profile {
	case ProfileClient:
		ext = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case ProfileServer:
		ext = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	case ProfilePeer:
		ext = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	tmpl = &x509.Certificate{
		SerialNumber: serial,
		Subject:      name,
		RawSubject:   rawSubject,
		NotBefore:    now.Truncate(time.Second).Add(-clockSkew).UTC(),
		NotAfter:     notAfter.UTC(),
		KeyUsage:     usage,
		ExtKeyUsage:  ext,
		// No basicConstraints at all: the policy allows only the
		// profile's extensions, and without it (and without keyCertSign)
		// the certificate is not a CA (RFC 5280 §4.2.1.9).
		SubjectKeyId: ski,
	}
	if profile != ProfileClient {
		tmpl.DNSNames = csr.DNSNames
		tmpl.IPAddresses = csr.IPAddresses
	}
	return tmpl, rdns.String(), nil
}

// csrKeyID is keyID of the CSR's public key, read from the subjectPublicKey
// bit string of the CSR's own SubjectPublicKeyInfo instead of marshalling
// the parsed key and parsing that again: the same bytes (x509 accepts only
// DER, which marshals back identically; TestCSRKeyIDIsKeyID), without
// about 28 allocations per sign. Anything unexpected falls back to keyID.
func csrKeyID(csr *x509.CertificateRequest) ([]byte, error) {
	in := cryptobyte.String(csr.RawSubjectPublicKeyInfo)
	var spki, alg cryptobyte.String
	var bits encasn1.BitString
	if !in.ReadASN1(&spki, cbasn1.SEQUENCE) || !in.Empty() ||
		!spki.ReadASN1(&alg, cbasn1.SEQUENCE) || !spki.ReadASN1BitString(&bits) || !spki.Empty() {
		return keyID(csr.PublicKey)
	}
	sum := sha1.Sum(bits.Bytes) //nolint:gosec // identifier, not a security function.
	return sum[:], nil
}

// caKey is a loaded CA: its signer in custody and its parsed certificate,
// also as PEM (every sign answers with it).
type caKey struct {
	signer  crypto.Signer
	cert    *x509.Certificate
	certPEM string
}

// certPEM returns der as a PEM CERTIFICATE block, byte for byte what
// pem.EncodeToMemory gives (64-column base64 lines), built in one
// allocation of the final size instead of through a streaming encoder.
func certPEM(der []byte) string {
	const (
		header = "-----BEGIN CERTIFICATE-----\n"
		footer = "-----END CERTIFICATE-----\n"
		line   = 64
	)
	n := base64.StdEncoding.EncodedLen(len(der))
	b := make([]byte, 0, len(header)+n+(n+line-1)/line+len(footer))
	b = append(b, header...)
	enc := b[len(b) : len(b)+n]
	base64.StdEncoding.Encode(enc, der)
	// Spread the encoded text into lines, from the end so nothing is
	// overwritten before it is moved.
	lines := (n + line - 1) / line
	b = b[:len(header)+n+lines]
	for i := lines - 1; i >= 0; i-- {
		start, end := i*line, min((i+1)*line, n)
		dst := len(header) + start + i
		copy(b[dst:dst+end-start], b[len(header)+start:len(header)+end])
		b[dst+end-start] = '\n'
	}
	b = append(b, footer...)
	return string(b)
}

// rekeyedSince returns a 409 generation_mismatch asking for a retry when
// the cluster's CA is no longer at generation gen, and nil otherwise (or
// when the store cannot say).
func (a *Authority) rekeyedSince(ctx context.Context, cluster string, gen int) error {
	if cur, err := a.st.Cluster(ctx, cluster); err == nil && cur.Generation != gen {
		return rekeyed(cluster)
	}
	return nil
}

// rekeyed is the 409 generation_mismatch of a sign that a rekey overtook:
// a retry signs with the new generation.
func rekeyed(cluster string) *api.Error {
	return api.New(http.StatusConflict, api.CodeGenerationMismatch,
		fmt.Sprintf("the CA of cluster %q was rekeyed while signing; retry", cluster))
}

// signer returns the CA key of gen, from the cache or from custody. gen is
// a generation the store just named: the active one for a sign (the cache
// then drops the cluster's older key, which another instance may have
// retired), or an older one still trusted for its CRL (crlFor), whose key
// the cache keeps only while it holds no newer one of the cluster.
func (a *Authority) signer(ctx context.Context, gen store.CAGeneration) (caKey, error) {
	if k, ok := a.signers.get(gen); ok {
		return k, nil
	}
	cert, err := x509.ParseCertificate(gen.CertificateDER)
	if err != nil {
		return caKey{}, fmt.Errorf("parse CA certificate of cluster %q generation %d: %w", gen.Cluster, gen.Generation, err)
	}
	s, err := a.keys.Signer(ctx, gen.KeyRef)
	if err != nil {
		return caKey{}, fmt.Errorf("load CA key of cluster %q generation %d: %w", gen.Cluster, gen.Generation, err)
	}
	k := caKey{signer: s, cert: cert, certPEM: certPEM(gen.CertificateDER)}
	a.signers.put(gen, k)
	return k, nil
}

// activeCA reads a cluster and its active generation (a sign needs no
// other), mapping absence to 404 ca_not_found.
func (a *Authority) activeCA(ctx context.Context, cluster string) (store.Cluster, store.CAGeneration, error) {
	c, g, err := a.st.ActiveCA(ctx, cluster)
	if errors.Is(err, api.ErrNotFound) {
		return store.Cluster{}, store.CAGeneration{}, caNotFound(cluster, err)
	}
	if err != nil {
		return store.Cluster{}, store.CAGeneration{}, fmt.Errorf("read cluster %q and its active CA: %w", cluster, err)
	}
	return c, g, nil
}
