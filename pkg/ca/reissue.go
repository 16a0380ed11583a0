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
	"strings"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// maxReissueAttempts bounds how many times a reissue reads the
// certificates to re-issue again because too many were recorded between
// its read and its transaction to sign them inside it (more than
// maxResignInTransaction). Each attempt signs only the certificates it has
// not signed yet, so an attempt after the first costs a read, a few
// signatures and the transaction. The last attempt signs inside the
// transaction however many were recorded meanwhile, so a reissue never
// fails because the cluster keeps signing.
const maxReissueAttempts = 8

// maxResignInTransaction bounds the certificates recorded meanwhile that
// an attempt before the last signs inside the store transaction, where
// every sign on the cluster waits for the commit: with more, the attempt
// gives up and the next one signs them before its transaction.
const maxResignInTransaction = 64

// reissue revokes as r says, rotates the CA of c (a compare-and-swap from
// its active generation, trusted for grace after) and re-signs under the
// new CA every other certificate valid and unrevoked now (not those of
// chain: the revoked serial and its successors), all in one store
// transaction. The new key and the certificates read before the
// transaction are made before it; the certificates recorded between that
// read and the transaction are signed inside it (store.ResignFunc), where
// no sign on the cluster can record, so a sign racing the reissue is
// either re-issued or recorded after the commit (and then refused as a
// rekey race, 409 generation_mismatch). A transaction that writes nothing
// destroys the key.
func (a *Authority) reissue(ctx context.Context, p auth.Principal, c store.Cluster, r store.Revocation, chain []string, grace time.Duration) (RevokeResult, error) {
	start := time.Now()
	expected := c.Generation
	next, ca, err := a.newCA(ctx, c.Name, expected+1, keys.Algorithm(c.KeyAlgorithm), c.CommonName, c.ValidityDays, a.now())
	if err != nil {
		return RevokeResult{}, err
	}
	// signed holds the certificates signed so far, by the serial they
	// replace: kept from one attempt to the next.
	signed := map[string]store.IssuedCertificate{}
	var (
		revoked, notReissued []string
		certs                []store.IssuedCertificate
		attempt, inTx        int
	)
	for attempt = 1; ; attempt++ {
		now := a.now()
		r.At = now
		cands, err := a.st.ReissueCandidates(ctx, c.Name, now)
		if err != nil {
			a.destroy(ctx, next.KeyRef)
			return RevokeResult{}, fmt.Errorf("read the certificates to re-issue on cluster %q: %w", c.Name, err)
		}
		var candidates []string
		var toSign []store.IssuedCertificate
		certs = certs[:0]
		for _, ic := range cands {
			if slices.Contains(chain, ic.Serial) || (r.User != "" && ic.User == r.User) {
				continue
			}
			candidates = append(candidates, ic.Serial)
			if nc, ok := signed[ic.Serial]; ok {
				certs = append(certs, nc)
			} else {
				toSign = append(toSign, ic)
			}
		}
		fresh, skipped, err := resign(toSign, ca, next.Generation, now)
		if err != nil {
			a.destroy(ctx, next.KeyRef)
			return RevokeResult{}, fmt.Errorf("re-sign the certificates of cluster %q: %w", c.Name, err)
		}
		for _, nc := range fresh {
			signed[nc.Supersedes] = nc
		}
		certs = append(certs, fresh...)
		notReissued = skipped
		// more signs, inside the store transaction, the certificates
		// recorded since cands was read: a handful, those of the window
		// between the read and the transaction.
		var moreSkipped []string
		var moreSigned int
		var moreErr error
		last := attempt == maxReissueAttempts
		more := func(_ context.Context, added []store.IssuedCertificate) ([]store.IssuedCertificate, error) {
			if len(added) > maxResignInTransaction && !last {
				return nil, fmt.Errorf("%d certificates recorded since the candidates were read: %w: %w",
					len(added), store.ErrCandidatesChanged, api.ErrConflict)
			}
			fresh, skipped, err := resign(added, ca, next.Generation, now)
			if err != nil {
				moreErr = err
				return nil, err
			}
			moreSkipped, moreSigned = skipped, len(fresh)
			return fresh, nil
		}
		res, err := a.st.Reissue(ctx, store.Reissue{
			Cluster: c.Name, Expected: expected, Next: next, Now: now, TrustedUntil: now.Add(grace),
			Revocation: r, Candidates: candidates, Certificates: certs,
		}, more)
		if err == nil {
			revoked = res.Revoked
			inTx = moreSigned
			certs = res.Certificates
			notReissued = append(notReissued, moreSkipped...)
			slices.Sort(notReissued)
			break
		}
		if moreErr != nil {
			// Signing inside the transaction failed: it was rolled back.
			a.destroy(ctx, next.KeyRef)
			return RevokeResult{}, fmt.Errorf("re-sign the certificates recorded meanwhile on cluster %q: %w", c.Name, err)
		}
		if store.NotWritten(err) {
			if errors.Is(err, store.ErrCandidatesChanged) && attempt < maxReissueAttempts {
				a.log.Info("many certificates were recorded during the reissue; reading them again",
					"cluster", c.Name, "attempt", attempt)
				continue
			}
			a.destroy(ctx, next.KeyRef)
			switch {
			case errors.Is(err, api.ErrGenerationMismatch):
				return RevokeResult{}, generationMismatch(c.Name, expected, 0, err)
			case errors.Is(err, store.ErrCandidatesChanged):
				return RevokeResult{}, api.New(http.StatusConflict, api.CodeConflict,
					fmt.Sprintf("the certificates of cluster %q kept changing during the reissue; retry", c.Name)).Wrap(err)
			}
			return RevokeResult{}, fmt.Errorf("reissue on cluster %q: %w", c.Name, err)
		}
		if !a.stored(ctx, c.Name, next.KeyRef) {
			a.log.Warn("reissue failed with an unknown outcome; the new CA key is kept",
				"cluster", c.Name, "generation", next.Generation, "key_ref", next.KeyRef, "err", err)
			return RevokeResult{}, fmt.Errorf("reissue on cluster %q: %w", c.Name, err)
		}
		// The transaction committed although it reported an error.
		a.log.Warn("reissue reported an error but was stored", "cluster", c.Name, "err", err)
		revoked = chain
		if r.User != "" {
			revoked = []string{}
		}
		break
	}
	reissued := make([]ReissuedCertificate, len(certs))
	for i, nc := range certs {
		reissued[i] = ReissuedCertificate{Serial: nc.Supersedes, SupersededBy: nc.Serial}
	}
	slices.SortFunc(reissued, func(x, y ReissuedCertificate) int { return strings.Compare(x.Serial, y.Serial) })
	a.log.Warn("certificates revoked and re-issued under a new CA", "cluster", c.Name, "by", p.User,
		"revoked_user", r.User, "serial", r.Serial, "serials", len(revoked), "reason", r.Reason,
		"reissued", len(reissued), "not_reissued", len(notReissued), "generation", next.Generation,
		"attempts", attempt, "signed_in_transaction", inTx,
		"grace_period_seconds", int64(grace/time.Second), "duration", time.Since(start))
	if grace > 0 {
		a.lastCRL(ctx, c.Name, next.Generation, expected, r.At.Add(grace))
	}
	a.destroyRetired(ctx, c.Name, next.Generation)
	// The new CA is active and loaded: its CRL below and the next sign
	// use it rather than load it from custody again.
	a.signers.put(next, ca)
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
