package ca

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// CRLValidity is the time between a CRL's thisUpdate and nextUpdate. A
// cached CRL is rebuilt after half of it, or at once after a revocation.
const CRLValidity = 24 * time.Hour

// Media types of GET /v1/clusters/{cluster}/crl.
const (
	ContentTypeCRL = "application/pkix-crl"
	ContentTypePEM = "application/x-pem-file"
)

// reasonCodes are the RFC 5280 CRLReason values of the reason names.
// unspecified is 0, which crypto/x509 leaves out of the entry, as RFC 5280
// §5.3.1 recommends.
var reasonCodes = map[string]int{
	store.ReasonUnspecified:          0,
	store.ReasonKeyCompromise:        1,
	store.ReasonAffiliationChanged:   3,
	store.ReasonSuperseded:           4,
	store.ReasonCessationOfOperation: 5,
}

// CRL returns the DER certificate revocation list of generation gen of
// cluster's CA (the active one when gen is 0): the certificates that
// generation signed and that were revoked explicitly, not yet expired,
// signed by that generation's key. A generation outside the trust bundle
// is 404 not_found. The CRL is cached in the store and rebuilt when a
// revocation happened since, or half its validity has passed.
func (a *Authority) CRL(ctx context.Context, cluster string, gen int) ([]byte, error) {
	c, err := a.readable(ctx, cluster)
	if err != nil {
		return nil, err
	}
	if gen == 0 {
		gen = c.Generation
	}
	g, ok, err := a.trustedGeneration(ctx, cluster, c.Generation, gen)
	if err != nil {
		return nil, fmt.Errorf("read trusted CA generations of cluster %q: %w", cluster, err)
	}
	if !ok {
		return nil, api.New(http.StatusNotFound, api.CodeNotFound,
			fmt.Sprintf("generation %d of cluster %q is not in the trust bundle", gen, cluster))
	}
	crl, err := a.crlFor(ctx, g, time.Time{})
	if err != nil {
		return nil, err
	}
	return crl.DER, nil
}

// trustedGeneration returns generation gen of cluster when it is in the
// trust bundle of the cluster's active generation active (false when
// not).
func (a *Authority) trustedGeneration(ctx context.Context, cluster string, active, gen int) (store.CAGeneration, bool, error) {
	gens, err := a.st.TrustedGenerations(ctx, cluster, active, a.now())
	if err != nil {
		return store.CAGeneration{}, false, err
	}
	for _, g := range gens {
		if g.Generation == gen {
			return g, true, nil
		}
	}
	return store.CAGeneration{}, false, nil
}

// crlFor returns the CRL of gen: the cached one while it is fresh, else a
// new one, numbered, signed through custody and cached. nextAtLeast, when
// set, postpones its nextUpdate (the last CRL of a generation whose key is
// about to be destroyed lasts as long as the generation is trusted). A
// generation whose key is gone (retired) keeps its last CRL.
func (a *Authority) crlFor(ctx context.Context, gen store.CAGeneration, nextAtLeast time.Time) (store.CRL, error) {
	now := a.now()
	cached, revision, err := a.st.CRL(ctx, gen.Cluster, gen.Generation)
	if err != nil {
		return store.CRL{}, fmt.Errorf("read the CRL of cluster %q generation %d: %w", gen.Cluster, gen.Generation, err)
	}
	fresh := cached.DER != nil && cached.Revision == revision && now.Before(cached.ThisUpdate.Add(CRLValidity/2))
	if fresh && nextAtLeast.IsZero() {
		return cached, nil
	}
	key, err := a.signer(ctx, gen)
	if err != nil {
		if errors.Is(err, keys.ErrNotFound) && cached.DER != nil {
			return cached, nil
		}
		return store.CRL{}, fmt.Errorf("build the CRL of cluster %q generation %d: %w", gen.Cluster, gen.Generation, err)
	}
	entries, err := a.st.CRLEntries(ctx, gen.Cluster, gen.Generation, now)
	if err != nil {
		return store.CRL{}, fmt.Errorf("read the revoked certificates of cluster %q generation %d: %w", gen.Cluster, gen.Generation, err)
	}
	number, err := a.st.NextCRLNumber(ctx, gen.Cluster)
	if err != nil {
		return store.CRL{}, fmt.Errorf("number a CRL of cluster %q: %w", gen.Cluster, err)
	}
	this := now.Truncate(time.Second)
	next := this.Add(CRLValidity)
	if nextAtLeast.After(next) {
		next = nextAtLeast.UTC().Truncate(time.Second)
	}
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: this, NextUpdate: next}
	for _, e := range entries {
		serial, ok := new(big.Int).SetString(e.Serial, 16)
		if !ok {
			return store.CRL{}, fmt.Errorf("certificate %q of cluster %q: the serial is not hex", e.Serial, gen.Cluster)
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: serial, RevocationTime: e.RevokedAt.UTC(), ReasonCode: reasonCodes[e.RevocationReason],
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, key.cert, key.signer)
	if err != nil {
		a.signers.remove(gen.KeyRef)
		return store.CRL{}, fmt.Errorf("sign the CRL of cluster %q generation %d: %w", gen.Cluster, gen.Generation, err)
	}
	crl := store.CRL{Cluster: gen.Cluster, Generation: gen.Generation, Number: number,
		ThisUpdate: this, NextUpdate: next, DER: der, Revision: revision}
	if err := a.st.PutCRL(ctx, crl); err != nil {
		return store.CRL{}, fmt.Errorf("cache the CRL of cluster %q generation %d: %w", gen.Cluster, gen.Generation, err)
	}
	a.log.Info("CRL issued", "cluster", gen.Cluster, "generation", gen.Generation, "crl_number", number, "entries", len(entries))
	return crl, nil
}

// refreshCRLs rebuilds, after a revocation, the CRL of every generation of
// c still trusted and returns the highest CRL number (0 if none could be
// built: the revocation stands, and the CRL is built on its next read).
func (a *Authority) refreshCRLs(ctx context.Context, c store.Cluster) int64 {
	gens, err := a.st.TrustedGenerations(ctx, c.Name, c.Generation, a.now())
	if err != nil {
		a.log.Warn("cannot rebuild the CRLs after a revocation", "cluster", c.Name, "err", err)
		return 0
	}
	var n int64
	for _, g := range gens {
		crl, err := a.crlFor(ctx, g, time.Time{})
		if err != nil {
			a.log.Warn("cannot rebuild a CRL after a revocation", "cluster", c.Name, "generation", g.Generation, "err", err)
			continue
		}
		n = max(n, crl.Number)
	}
	return n
}

// lastCRL builds the CRL of generation gen of cluster before a rekey
// destroys its key, valid until the generation leaves the trust bundle.
func (a *Authority) lastCRL(ctx context.Context, cluster string, active, gen int, trustedUntil time.Time) {
	g, ok, err := a.trustedGeneration(ctx, cluster, active, gen)
	if err == nil && ok {
		_, err = a.crlFor(ctx, g, trustedUntil)
	}
	if err != nil {
		a.log.Warn("cannot build the last CRL of a retired CA", "cluster", cluster, "generation", gen, "err", err)
	}
}

// parseCRLQuery reads the query of GET /v1/clusters/{cluster}/crl: an
// optional generation, nothing else.
func parseCRLQuery(rawQuery string) (int, error) {
	values, err := url.ParseQuery(rawQuery)
	if err != nil {
		return 0, api.Invalid(api.CodeInvalidField, "query", "the query string is malformed")
	}
	gen := 0
	for name, vs := range values {
		if name != "generation" {
			shown := truncate(name, 64)
			return 0, api.Invalid(api.CodeUnknownField, shown, fmt.Sprintf("unknown query parameter %q; known: generation", shown))
		}
		if len(vs) != 1 {
			return 0, api.Invalid(api.CodeDuplicateField, name, "query parameter \"generation\" appears more than once")
		}
		if gen, err = strconv.Atoi(vs[0]); err != nil || gen < 1 {
			return 0, invalidGeneration()
		}
	}
	return gen, nil
}

func (a *Authority) handleCRL(w http.ResponseWriter, r *http.Request) error {
	gen, err := parseCRLQuery(r.URL.RawQuery)
	if err != nil {
		return err
	}
	der, err := a.CRL(r.Context(), r.PathValue("cluster"), gen)
	if err != nil {
		return err
	}
	body, ctype := der, ContentTypeCRL
	if strings.Contains(r.Header.Get("Accept"), ContentTypePEM) {
		body, ctype = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), ContentTypePEM
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(body)
	return err
}
