package ca

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// Registry listing: a page holds at most MaxListedCertificates entries,
// DefaultListedCertificates when the caller names no limit.
const (
	MaxListedCertificates     = 1000
	DefaultListedCertificates = 100
	// maxFilterLen bounds the user and serial filters.
	maxFilterLen = 256
)

// IssuedCertificate is one entry of a cluster's issued-certificate registry
// as the API shows it.
type IssuedCertificate struct {
	Serial       string    `json:"serial"`
	Subject      string    `json:"subject"`
	Profile      string    `json:"profile"`
	User         string    `json:"requester_user"`
	Project      string    `json:"requester_project"`
	CAGeneration int       `json:"ca_generation"`
	IssuedAt     time.Time `json:"issued_at"`
	NotBefore    time.Time `json:"not_before"`
	NotAfter     time.Time `json:"not_after"`
	// RevokedAt is when the certificate stopped verifying against the trust
	// bundle (its CA was rekeyed away); absent while it verifies.
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// Status is "valid", "revoked" or "expired", at the time of the listing.
	Status string `json:"status"`
	// Privileged marks a subject Kubernetes treats as powerful (a CN or O
	// beginning "system:", O=kubeadm:cluster-admins), issued to an admin.
	Privileged bool `json:"privileged"`
}

// CertificateList is the answer of GET /v1/clusters/{cluster}/certificates:
// one page of the registry.
type CertificateList struct {
	Cluster      string              `json:"cluster"`
	Certificates []IssuedCertificate `json:"certificates"`
	// Truncated says more entries match than this page holds; Next then
	// fetches them.
	Truncated bool `json:"truncated"`
	// Next is the opaque cursor of the following page, to pass back as the
	// next query parameter; absent on the last page.
	Next string `json:"next,omitempty"`
}

// ListRequest selects a page of the registry: the query parameters of GET
// /v1/clusters/{cluster}/certificates. The zero value is the first page of
// DefaultListedCertificates entries, unfiltered.
type ListRequest struct {
	// Limit is the page size, 1 to MaxListedCertificates;
	// DefaultListedCertificates when 0.
	Limit int
	// Next is the cursor a previous page returned; the first page when "".
	Next string
	// User keeps the certificates this user asked for.
	User string
	// Serial keeps the certificate with this serial (hex, any case, colons
	// allowed).
	Serial string
	// Status keeps the certificates "valid", "revoked" or "expired" now.
	Status string
	// Generation keeps the certificates this CA generation signed.
	Generation int
}

// listParams are the query parameters of the listing, in the order they
// are documented.
var listParams = []string{"limit", "next", "user", "serial", "status", "generation"}

// parseListRequest reads the query string of a listing strictly: every
// parameter known, given once and not empty, numbers decimal.
func parseListRequest(rawQuery string) (ListRequest, error) {
	values, err := url.ParseQuery(rawQuery)
	if err != nil {
		return ListRequest{}, api.Invalid(api.CodeInvalidField, "query", "the query string is malformed")
	}
	var req ListRequest
	for _, name := range slices.Sorted(maps.Keys(values)) {
		vs := values[name]
		if !slices.Contains(listParams, name) {
			shown := name
			if len(shown) > 64 {
				shown = shown[:64] + "…"
			}
			return ListRequest{}, api.Invalid(api.CodeUnknownField, shown,
				fmt.Sprintf("unknown query parameter %q; known: %s", shown, strings.Join(listParams, ", ")))
		}
		if len(vs) != 1 {
			return ListRequest{}, api.Invalid(api.CodeDuplicateField, name,
				fmt.Sprintf("query parameter %q appears more than once", name))
		}
		v := vs[0]
		if v == "" {
			return ListRequest{}, api.Invalid(api.CodeInvalidField, name,
				fmt.Sprintf("query parameter %q is empty; leave it out instead", name))
		}
		switch name {
		case "limit":
			if req.Limit, err = strconv.Atoi(v); err != nil || req.Limit < 1 {
				return ListRequest{}, invalidLimit()
			}
		case "generation":
			if req.Generation, err = strconv.Atoi(v); err != nil || req.Generation < 1 {
				return ListRequest{}, invalidGeneration()
			}
		case "next":
			req.Next = v
		case "user":
			req.User = v
		case "serial":
			req.Serial = v
		case "status":
			req.Status = v
		}
	}
	return req, nil
}

func invalidLimit() error {
	return api.Invalid(api.CodeInvalidField, "limit",
		fmt.Sprintf("limit must be a whole number between 1 and %d", MaxListedCertificates))
}

func invalidGeneration() error {
	return api.Invalid(api.CodeInvalidField, "generation", "generation must be a whole number of at least 1")
}

// query checks req and returns the store query of its page for cluster at
// now; it asks for one entry more than the page, to know whether another
// page follows.
func (req ListRequest) query(cluster string, now time.Time) (store.CertificateQuery, error) {
	q := store.CertificateQuery{Cluster: cluster, User: req.User, Generation: req.Generation, Now: now}
	limit := req.Limit
	if limit == 0 {
		limit = DefaultListedCertificates
	}
	if limit < 1 || limit > MaxListedCertificates {
		return q, invalidLimit()
	}
	q.Limit = limit + 1
	if req.Generation < 0 {
		return q, invalidGeneration()
	}
	if len(req.User) > maxFilterLen {
		return q, api.Invalid(api.CodeInvalidField, "user", fmt.Sprintf("user must be at most %d bytes", maxFilterLen))
	}
	if req.Serial != "" {
		serial, err := parseSerial(req.Serial)
		if err != nil {
			return q, err
		}
		q.Serial = serial
	}
	switch req.Status {
	case "", store.StatusValid, store.StatusRevoked, store.StatusExpired:
		q.Status = req.Status
	default:
		return q, api.Invalid(api.CodeInvalidField, "status", "status must be valid, revoked or expired")
	}
	if req.Next != "" {
		k, err := decodeCursor(req.Next)
		if err != nil {
			return q, api.Invalid(api.CodeInvalidField, "next",
				"next must be a cursor returned by a previous page, unchanged").Wrap(err)
		}
		q.After = &k
	}
	return q, nil
}

// parseSerial returns the serial a client gave (field serial) as the
// registry stores it, or 400 invalid_field.
func parseSerial(serial string) (string, error) {
	s, ok := normalizeSerial(serial)
	if !ok {
		return "", api.Invalid(api.CodeInvalidField, "serial",
			"serial must be 1 to 40 hexadecimal digits (any case, colons allowed)")
	}
	return canonicalSerial(s), nil
}

// canonicalSerial returns the hex digits s (as normalizeSerial returns them)
// in the form the registry stores: the serial's minimal big-endian bytes in
// hex, so "cdee…" (math/big's Text(16) of a serial whose first byte is
// below 0x10) and "00cdee…" find the certificate stored as "0cdee…".
func canonicalSerial(s string) string {
	s = strings.TrimLeft(s, "0")
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}

// normalizeSerial returns s as the registry stores serials: lowercase hex,
// no separators.
func normalizeSerial(s string) (string, bool) {
	if len(s) > maxFilterLen {
		return "", false
	}
	s = strings.ToLower(strings.ReplaceAll(s, ":", ""))
	if len(s) < 1 || len(s) > 40 {
		return "", false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return "", false
		}
	}
	return s, true
}

// The cursor is the key of the last entry of a page, which the next page
// starts after: base64url of "1|<issued_at>|<serial>". It carries nothing
// that the page itself does not show, so it needs no secrecy; it is only
// accepted in its one canonical form.
const (
	cursorVersion    = "1"
	cursorTimeLayout = "2006-01-02T15:04:05.000000000Z"
	maxCursorLen     = 128
)

// encodeCursor returns the cursor of the page that follows k.
func encodeCursor(k store.CertificateKey) string {
	raw := cursorVersion + "|" + k.IssuedAt.UTC().Format(cursorTimeLayout) + "|" + k.Serial
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// decodeCursor is the inverse of encodeCursor; it refuses every string
// encodeCursor would not have produced.
func decodeCursor(s string) (store.CertificateKey, error) {
	if len(s) > maxCursorLen {
		return store.CertificateKey{}, fmt.Errorf("cursor of %d bytes", len(s))
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return store.CertificateKey{}, fmt.Errorf("decode cursor: %w", err)
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 3 || parts[0] != cursorVersion {
		return store.CertificateKey{}, fmt.Errorf("cursor has %d parts or an unknown version", len(parts))
	}
	t, err := time.Parse(cursorTimeLayout, parts[1])
	if err != nil || t.IsZero() {
		return store.CertificateKey{}, fmt.Errorf("cursor time: %w", err)
	}
	serial, ok := normalizeSerial(parts[2])
	k := store.CertificateKey{IssuedAt: t.UTC(), Serial: serial}
	if !ok || encodeCursor(k) != s {
		return store.CertificateKey{}, fmt.Errorf("cursor is not in canonical form")
	}
	return k, nil
}

// Certificates returns the first page of the registry of cluster, unfiltered:
// ListCertificates with a zero ListRequest.
func (a *Authority) Certificates(ctx context.Context, cluster string) (CertificateList, error) {
	return a.ListCertificates(ctx, cluster, ListRequest{})
}

// ListCertificates returns a page of the certificates issued for cluster,
// newest first, for audit: who asked for what, under which CA generation,
// and whether it still verifies. Filters and paging run in the store, so a
// page costs about what it holds whatever the size of the registry.
// Reading it needs read access to the cluster's project.
func (a *Authority) ListCertificates(ctx context.Context, cluster string, req ListRequest) (CertificateList, error) {
	p, err := principal(ctx)
	if err != nil {
		return CertificateList{}, err
	}
	if err := ValidateClusterName(cluster); err != nil {
		return CertificateList{}, err
	}
	now := a.now().UTC()
	q, err := req.query(cluster, now)
	if err != nil {
		return CertificateList{}, err
	}
	c, err := a.cluster(ctx, cluster)
	if err != nil {
		return CertificateList{}, err
	}
	if err := p.AuthorizeRead(c.Project); err != nil {
		return CertificateList{}, err
	}
	recs, err := a.st.Certificates(ctx, q)
	if err != nil {
		return CertificateList{}, fmt.Errorf("list certificates of cluster %q: %w", cluster, err)
	}
	out := CertificateList{Cluster: cluster, Certificates: make([]IssuedCertificate, 0, min(len(recs), q.Limit-1))}
	if len(recs) >= q.Limit {
		recs = recs[:q.Limit-1]
		last := recs[len(recs)-1]
		out.Truncated = true
		out.Next = encodeCursor(store.CertificateKey{IssuedAt: last.IssuedAt, Serial: last.Serial})
	}
	for _, r := range recs {
		out.Certificates = append(out.Certificates, entryOf(r, now))
	}
	return out, nil
}

// entryOf is the API view of a registry entry at now, with its status.
func entryOf(r store.IssuedCertificate, now time.Time) IssuedCertificate {
	ic := IssuedCertificate{
		Serial: r.Serial, Subject: r.Subject, Profile: r.Profile, User: r.User, Project: r.Project,
		CAGeneration: r.Generation, IssuedAt: r.IssuedAt.UTC(), NotBefore: r.NotBefore.UTC(), NotAfter: r.NotAfter.UTC(),
		Status: store.StatusValid, Privileged: r.Privileged,
	}
	if !r.RevokedAt.IsZero() {
		t := r.RevokedAt.UTC()
		ic.RevokedAt = &t
		if !t.After(now) {
			ic.Status = store.StatusRevoked
		}
	}
	if ic.Status == store.StatusValid && !r.NotAfter.After(now) {
		ic.Status = store.StatusExpired
	}
	return ic
}

func (a *Authority) handleList(w http.ResponseWriter, r *http.Request) error {
	req, err := parseListRequest(r.URL.RawQuery)
	if err != nil {
		return err
	}
	res, err := a.ListCertificates(r.Context(), r.PathValue("cluster"), req)
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, res)
}
