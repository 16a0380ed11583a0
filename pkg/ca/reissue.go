package ca

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// maxReissueAttempts bounds how many times a reissue signs everything
// again because the certificates to re-issue changed meanwhile (a sign or
// a revocation committed between the read and the transaction).
const maxReissueAttempts = 3

// reissue revokes as r says, rotates the CA of c (a compare-and-swap from
// its active generation, trusted for grace after) and re-signs under the
// new CA every other certificate valid and unrevoked now, all in one store
// transaction. The new key and every certificate are made before the
// transaction; a transaction that writes nothing destroys the key.
func (a *Authority) reissue(ctx context.Context, p auth.Principal, c store.Cluster, r store.Revocation, chain []string, grace time.Duration) (RevokeResult, error) {
	start := time.Now()
	expected := c.Generation
	var (
		revoked, notReissued []string
		reissued             []ReissuedCertificate
		next                 store.CAGeneration
	)
	for attempt := 1; ; attempt++ {
		now := a.now()
		r.At = now
		cands, err := a.st.ReissueCandidates(ctx, c.Name, now)
		if err != nil {
			return RevokeResult{}, fmt.Errorf("read the certificates to re-issue on cluster %q: %w", c.Name, err)
		}
		var keep []store.IssuedCertificate
		for _, ic := range cands {
			if slices.Contains(chain, ic.Serial) || (r.User != "" && ic.User == r.User) {
				continue
			}
			keep = append(keep, ic)
		}
		var ca caKey
		next, ca, err = a.newCA(ctx, c.Name, expected+1, keys.Algorithm(c.KeyAlgorithm), c.CommonName, c.ValidityDays, now)
		if err != nil {
			return RevokeResult{}, err
		}
		certs, skipped, err := resign(keep, ca, next.Generation, now)
		if err != nil {
			a.destroy(ctx, next.KeyRef)
			return RevokeResult{}, fmt.Errorf("re-sign the certificates of cluster %q: %w", c.Name, err)
		}
		candidates := make([]string, len(keep))
		for i, ic := range keep {
			candidates[i] = ic.Serial
		}
		revoked, err = a.st.Reissue(ctx, store.Reissue{
			Cluster: c.Name, Expected: expected, Next: next, Now: now, TrustedUntil: now.Add(grace),
			Revocation: r, Candidates: candidates, Certificates: certs,
		})
		if err == nil {
			notReissued = skipped
			reissued = make([]ReissuedCertificate, len(certs))
			for i, nc := range certs {
				reissued[i] = ReissuedCertificate{Serial: nc.Supersedes, SupersededBy: nc.Serial}
			}
			break
		}
		switch {
		case store.NotWritten(err):
			a.destroy(ctx, next.KeyRef)
			switch {
			case errors.Is(err, store.ErrCandidatesChanged) && attempt < maxReissueAttempts:
				a.log.Info("the certificates to re-issue changed meanwhile; signing them again",
					"cluster", c.Name, "attempt", attempt)
				continue
			case errors.Is(err, api.ErrGenerationMismatch):
				return RevokeResult{}, generationMismatch(c.Name, expected, 0, err)
			case errors.Is(err, store.ErrCandidatesChanged):
				return RevokeResult{}, api.New(http.StatusConflict, api.CodeConflict,
					fmt.Sprintf("the certificates of cluster %q kept changing during the reissue; retry", c.Name)).Wrap(err)
			}
			return RevokeResult{}, fmt.Errorf("reissue on cluster %q: %w", c.Name, err)
		case !a.stored(ctx, c.Name, next.KeyRef):
			a.log.Warn("reissue failed with an unknown outcome; the new CA key is kept",
				"cluster", c.Name, "generation", next.Generation, "key_ref", next.KeyRef, "err", err)
			return RevokeResult{}, fmt.Errorf("reissue on cluster %q: %w", c.Name, err)
		}
		a.log.Warn("reissue reported an error but was stored", "cluster", c.Name, "err", err)
		// The transaction committed: the certificates are as signed.
		revoked = chain
		if r.User != "" {
			revoked = []string{}
		}
		notReissued = skipped
		reissued = make([]ReissuedCertificate, len(certs))
		for i, nc := range certs {
			reissued[i] = ReissuedCertificate{Serial: nc.Supersedes, SupersededBy: nc.Serial}
		}
		break
	}
	a.log.Warn("certificates revoked and re-issued under a new CA", "cluster", c.Name, "by", p.User,
		"revoked_user", r.User, "serial", r.Serial, "serials", len(revoked), "reason", r.Reason,
		"reissued", len(reissued), "not_reissued", len(notReissued), "generation", next.Generation,
		"grace_period_seconds", int64(grace/time.Second), "duration", time.Since(start))
	if grace > 0 {
		a.lastCRL(ctx, c.Name, next.Generation, expected, r.At.Add(grace))
	}
	a.destroyRetired(ctx, c.Name, next.Generation)
	c.Generation = next.Generation
	return RevokeResult{
		Cluster: c.Name, Revoked: revoked, Reason: r.Reason, User: r.User,
		CRLNumber: a.refreshCRLs(ctx, c), CAGeneration: next.Generation,
		Reissued: &reissued, NotReissued: notReissued,
	}, nil
}

// resign signs every certificate of cands again with ca (generation gen)
// at now: the same subject, public key, key usages, SANs and profile, the
// same NotAfter capped by the CA's, a new serial. It returns the new
// registry entries, and the serials it could not sign again (no DER kept).
func resign(cands []store.IssuedCertificate, ca caKey, gen int, now time.Time) ([]store.IssuedCertificate, []string, error) {
	var out []store.IssuedCertificate
	var skipped []string
	notBefore := now.Truncate(time.Second).Add(-clockSkew).UTC()
	for _, ic := range cands {
		if ic.CertificateDER == nil {
			skipped = append(skipped, ic.Serial)
			continue
		}
		old, err := x509.ParseCertificate(ic.CertificateDER)
		if err != nil {
			return nil, nil, fmt.Errorf("parse certificate %s: %w", ic.Serial, err)
		}
		serial, err := randomSerial()
		if err != nil {
			return nil, nil, err
		}
		notAfter := old.NotAfter
		if notAfter.After(ca.cert.NotAfter) {
			notAfter = ca.cert.NotAfter
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial,
			RawSubject:   old.RawSubject,
			NotBefore:    notBefore,
			NotAfter:     notAfter.UTC(),
			KeyUsage:     old.KeyUsage,
			ExtKeyUsage:  old.ExtKeyUsage,
			SubjectKeyId: old.SubjectKeyId,
			DNSNames:     old.DNSNames,
			IPAddresses:  old.IPAddresses,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, old.PublicKey, ca.signer)
		if err != nil {
			return nil, nil, fmt.Errorf("re-sign certificate %s: %w", ic.Serial, err)
		}
		out = append(out, store.IssuedCertificate{
			Cluster: ic.Cluster, Serial: hex.EncodeToString(serial.Bytes()), Generation: gen,
			Subject: ic.Subject, Profile: ic.Profile, User: ic.User, Project: ic.Project,
			NotBefore: notBefore, NotAfter: notAfter.UTC(), IssuedAt: now, Privileged: ic.Privileged,
			CertificateDER: der, Supersedes: ic.Serial,
		})
	}
	return out, skipped, nil
}
