package ca

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/fakeclock"
	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// listPage is the wire form of a registry page.
type listPage struct {
	Cluster      string              `json:"cluster"`
	Certificates []IssuedCertificate `json:"certificates"`
	Truncated    bool                `json:"truncated"`
	Next         string              `json:"next"`
}

// listAll pages through the registry of c1 over HTTP with query (without
// next), returning every entry in order and the number of pages.
func listAll(t *testing.T, routes []api.Route, query url.Values) ([]IssuedCertificate, int) {
	t.Helper()
	var out []IssuedCertificate
	for pages := 1; ; pages++ {
		rec := serve(t, routes, &member, "GET", "/v1/clusters/c1/certificates?"+query.Encode(), "", "", nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("page %d: status %d: %s", pages, rec.Code, rec.Body)
		}
		var p listPage
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p.Certificates...)
		if p.Truncated != (p.Next != "") {
			t.Fatalf("page %d: truncated %v with next %q", pages, p.Truncated, p.Next)
		}
		if p.Next == "" {
			return out, pages
		}
		query = cloneValues(query)
		query.Set("next", p.Next)
		if pages > 100 {
			t.Fatal("paging does not end")
		}
	}
}

func cloneValues(v url.Values) url.Values {
	c := url.Values{}
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}

// TestListFindsACertificateBehindManyCheapOnes is the hole of issue 9 §5:
// 1,000 cheap signs pushed any certificate out of the 1,000 newest the
// listing showed. The serial filter finds it and paging reaches it.
func TestListFindsACertificateBehindManyCheapOnes(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	hidden, err := f.a.Sign(as(admin), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "ops", orgs: []string{"dev"}})})
	if err != nil {
		t.Fatal(err)
	}
	// The cheap signs go straight to the registry: what the listing does
	// with them is the point, not signing them.
	const cheap = MaxListedCertificates + 5
	for i := range cheap {
		f.clock.Advance(time.Millisecond)
		ic := store.IssuedCertificate{
			Cluster: "c1", Serial: fmt.Sprintf("%032x", i+1), Generation: 1, Subject: "CN=alice",
			Profile: "client", User: "alice", Project: "p1",
			NotBefore: f.clock.Now(), NotAfter: f.clock.Now().Add(time.Hour), IssuedAt: f.clock.Now(),
		}
		if err := f.st.RecordCertificate(context.Background(), ic); err != nil {
			t.Fatal(err)
		}
	}
	routes := Routes(f.a)

	t.Run("the serial filter finds it", func(t *testing.T) {
		got, pages := listAll(t, routes, url.Values{"serial": {strings.ToUpper(hidden.Serial)}})
		if len(got) != 1 || got[0].Serial != hidden.Serial || got[0].User != admin.User || pages != 1 {
			t.Fatalf("serial filter returned %d entries in %d pages", len(got), pages)
		}
	})
	t.Run("the serial filter finds it however its hex is padded", func(t *testing.T) {
		// math/big's Text(16) drops a leading zero nibble; a leading 00
		// byte is padding too. Both name the same serial.
		n, ok := new(big.Int).SetString(hidden.Serial, 16)
		if !ok {
			t.Fatalf("serial %q is not hex", hidden.Serial)
		}
		for _, form := range []string{n.Text(16), "00" + hidden.Serial, "0000" + n.Text(16)} {
			got, _ := listAll(t, routes, url.Values{"serial": {form}})
			if len(got) != 1 || got[0].Serial != hidden.Serial {
				t.Fatalf("serial=%s returned %d entries", form, len(got))
			}
		}
	})
	t.Run("the user filter finds it", func(t *testing.T) {
		got, _ := listAll(t, routes, url.Values{"user": {admin.User}})
		if len(got) != 1 || got[0].Serial != hidden.Serial {
			t.Fatalf("user filter returned %d entries", len(got))
		}
	})
	t.Run("paging reaches it, last, and every entry once", func(t *testing.T) {
		for _, limit := range []string{"", "1000", "333"} {
			q := url.Values{}
			if limit != "" {
				q.Set("limit", limit)
			}
			got, pages := listAll(t, routes, q)
			seen := map[string]bool{}
			for _, c := range got {
				if seen[c.Serial] {
					t.Fatalf("limit %q: serial %s listed twice", limit, c.Serial)
				}
				seen[c.Serial] = true
			}
			if len(got) != cheap+1 || got[len(got)-1].Serial != hidden.Serial {
				t.Fatalf("limit %q: %d entries in %d pages, last %s", limit, len(got), pages, got[len(got)-1].Serial)
			}
		}
	})
	t.Run("the default page holds 100 and says more follow", func(t *testing.T) {
		rec := serve(t, routes, &member, "GET", "/v1/clusters/c1/certificates", "", "", nil)
		var p listPage
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || len(p.Certificates) != DefaultListedCertificates || !p.Truncated || p.Next == "" {
			t.Fatalf("default page: %d entries, truncated %v, next %q (%v)", len(p.Certificates), p.Truncated, p.Next, err)
		}
	})
}

func TestListQueryParameters(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	first := signClient(t, f, "c1")
	f.clock.Advance(time.Second)
	signClient(t, f, "c1")
	routes := Routes(f.a)
	rec := serve(t, routes, &member, "GET", "/v1/clusters/c1/certificates?limit=1", "", "", nil)
	var p listPage
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Next == "" {
		t.Fatalf("first page: %s", rec.Body)
	}
	next := p.Next
	raw, err := base64.RawURLEncoding.DecodeString(next)
	if err != nil {
		t.Fatalf("cursor %q is not base64url: %v", next, err)
	}
	reencode := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	flip := []byte(next)
	flip[len(flip)/2] ^= 0x01

	tests := []struct {
		name      string
		query     string
		wantCode  string
		wantField string
	}{
		{"every parameter at once is accepted", "limit=5&user=alice&serial=" + first.Serial + "&status=valid&generation=1&next=" + next, "", ""},
		{"an unknown parameter", "lmit=5", api.CodeUnknownField, "lmit"},
		{"a parameter given twice", "limit=5&limit=6", api.CodeDuplicateField, "limit"},
		{"an empty parameter", "user=", api.CodeInvalidField, "user"},
		{"a malformed query string", "limit=%zz", api.CodeInvalidField, "query"},
		{"limit 0", "limit=0", api.CodeInvalidField, "limit"},
		{"a negative limit", "limit=-1", api.CodeInvalidField, "limit"},
		{"a limit over 1000", "limit=1001", api.CodeInvalidField, "limit"},
		{"a limit that is not a number", "limit=ten", api.CodeInvalidField, "limit"},
		{"limit 1000", "limit=1000", "", ""},
		{"an unknown status", "status=lost", api.CodeInvalidField, "status"},
		{"a status in capitals", "status=VALID", api.CodeInvalidField, "status"},
		{"generation 0", "generation=0", api.CodeInvalidField, "generation"},
		{"a generation that is not a number", "generation=1.5", api.CodeInvalidField, "generation"},
		{"a serial that is not hex", "serial=xyz", api.CodeInvalidField, "serial"},
		{"a serial of 41 digits", "serial=" + strings.Repeat("a", 41), api.CodeInvalidField, "serial"},
		{"a serial with colons", "serial=" + strings.ToUpper(first.Serial[:2]) + ":" + first.Serial[2:], "", ""},
		{"a cursor with a flipped bit", "next=" + string(flip), api.CodeInvalidField, "next"},
		{"a cursor that is not base64", "next=!!!", api.CodeInvalidField, "next"},
		// A hand-made cursor whose length needs padding: the page's own
		// cursor needs none when its serial has 30 digits (1 in 256).
		{"a cursor with padding", "next=" + url.QueryEscape(base64.URLEncoding.EncodeToString([]byte("1|2026-03-01T12:00:00.000000000Z|ab"))), api.CodeInvalidField, "next"},
		{"a cursor in standard base64", "next=" + url.QueryEscape(base64.StdEncoding.EncodeToString(raw)+"+"), api.CodeInvalidField, "next"},
		{"a cursor of another version", "next=" + reencode("2"+string(raw[1:])), api.CodeInvalidField, "next"},
		{"a cursor with an uppercase serial", "next=" + reencode(strings.ToUpper(string(raw))), api.CodeInvalidField, "next"},
		{"a cursor with a time in another layout", "next=" + reencode("1|2026-03-01T12:00:00Z|ab"), api.CodeInvalidField, "next"},
		{"a cursor with the zero time", "next=" + reencode("1|0001-01-01T00:00:00.000000000Z|ab"), api.CodeInvalidField, "next"},
		{"a cursor with a fourth part", "next=" + reencode(string(raw)+"|x"), api.CodeInvalidField, "next"},
		{"a cursor of 200 bytes", "next=" + strings.Repeat("A", 200), api.CodeInvalidField, "next"},
		{"a well-formed cursor made by hand", "next=" + reencode("1|2026-03-01T12:00:00.000000000Z|ab"), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(t, routes, &member, "GET", "/v1/clusters/c1/certificates?"+tt.query, "", "", nil)
			if tt.wantCode == "" {
				if rec.Code != http.StatusOK {
					t.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
				return
			}
			var prob struct {
				Code   string           `json:"code"`
				Errors []api.FieldError `json:"errors"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &prob); err != nil {
				t.Fatal(err)
			}
			if rec.Code != http.StatusBadRequest || prob.Code != tt.wantCode || len(prob.Errors) != 1 || prob.Errors[0].Field != tt.wantField {
				t.Fatalf("status %d %s, want 400 %s naming %q", rec.Code, rec.Body, tt.wantCode, tt.wantField)
			}
		})
	}
	t.Run("the query is checked before the cluster is looked up", func(t *testing.T) {
		if rec := serve(t, routes, &member, "GET", "/v1/clusters/nope/certificates?limit=0", "", "", nil); rec.Code != http.StatusBadRequest {
			t.Fatalf("status %d", rec.Code)
		}
	})
	t.Run("another project's member still may not read", func(t *testing.T) {
		if rec := serve(t, routes, &otherMember, "GET", "/v1/clusters/c1/certificates?serial="+first.Serial, "", "", nil); rec.Code != http.StatusForbidden {
			t.Fatalf("status %d", rec.Code)
		}
	})
}

func TestListFilters(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	old := signClient(t, f, "c1")
	f.clock.Advance(time.Second)
	if _, err := f.a.Rekey(as(member), "c1", RekeyRequest{}); err != nil {
		t.Fatal(err)
	}
	fresh := signClient(t, f, "c1")
	f.clock.Advance(time.Second)
	short, err := f.a.Sign(as(admin), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "x"}), ValidityHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(2 * time.Hour)
	routes := Routes(f.a)
	tests := []struct {
		query string
		want  []string
	}{
		{"status=revoked", []string{old.Serial}},
		{"status=expired", []string{short.Serial}},
		{"status=valid", []string{fresh.Serial}},
		{"generation=1", []string{old.Serial}},
		{"generation=2", []string{short.Serial, fresh.Serial}},
		{"user=" + admin.User, []string{short.Serial}},
		{"user=" + member.User + "&generation=2", []string{fresh.Serial}},
		{"user=nobody", nil},
		{"", []string{short.Serial, fresh.Serial, old.Serial}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, _ := url.ParseQuery(tt.query + "&limit=1")
			got, _ := listAll(t, routes, q)
			var serials []string
			for _, c := range got {
				serials = append(serials, c.Serial)
			}
			if strings.Join(serials, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("got %v, want %v", serials, tt.want)
			}
		})
	}
}

// countingStore wraps the real SQLite store and counts the CA generations
// each read returns, so a test sees what a sign or a show reads.
type countingStore struct {
	*sqlite.DB
	mu       sync.Mutex
	genRows  int
	fullRead int // calls of Generations, which read the whole history
}

func (s *countingStore) add(rows int, full bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.genRows += rows
	if full {
		s.fullRead++
	}
}

func (s *countingStore) reset() (rows, full int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows, full = s.genRows, s.fullRead
	s.genRows, s.fullRead = 0, 0
	return rows, full
}

func (s *countingStore) Generations(ctx context.Context, cluster string) ([]store.CAGeneration, error) {
	gens, err := s.DB.Generations(ctx, cluster)
	s.add(len(gens), true)
	return gens, err
}

func (s *countingStore) ActiveCA(ctx context.Context, cluster string) (store.Cluster, store.CAGeneration, error) {
	c, g, err := s.DB.ActiveCA(ctx, cluster)
	if err == nil {
		s.add(1, false)
	}
	return c, g, err
}

func (s *countingStore) TrustedGenerations(ctx context.Context, cluster string, active int, now time.Time) ([]store.CAGeneration, error) {
	gens, err := s.DB.TrustedGenerations(ctx, cluster, active, now)
	s.add(len(gens), false)
	return gens, err
}

// TestSignAndShowReadOnlyTheGenerationsTheyNeed: after 700 rekeys a sign
// read all 700 generations (2.5 → 10.7 ms); it needs the active one, and a
// show needs the active one and those still in the trust bundle.
func TestSignAndShowReadOnlyTheGenerationsTheyNeed(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "clusterkeys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := &countingStore{DB: db}
	clk := fakeclock.New(testStart)
	a := New(st, newFakeKeys(), Options{Now: clk.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if _, _, err := a.CreateCA(as(member), "c1", CreateRequest{}); err != nil {
		t.Fatal(err)
	}
	// Generations 2 to 698 straight into the store (their keys and
	// certificates are never used), then two real rekeys, the last with
	// a grace period: generation 699 stays trusted, 1 to 698 do not.
	const total = 700
	for g := 1; g < total-2; g++ {
		clk.Advance(time.Second)
		next := store.CAGeneration{
			Cluster: "c1", Generation: g + 1, KeyRef: fmt.Sprintf("ca/c1/%d/bulk", g+1),
			CertificateDER: []byte("unused"), KeyAlgorithm: "ecdsa-p256",
			NotBefore: clk.Now(), NotAfter: clk.Now().AddDate(1, 0, 0), CreatedAt: clk.Now(),
		}
		if err := db.Rekey(ctx, "c1", g, next, clk.Now(), clk.Now()); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Second)
	if _, err := a.Rekey(as(member), "c1", RekeyRequest{}); err != nil {
		t.Fatal(err)
	}
	grace := int64(3600)
	if _, err := a.Rekey(as(member), "c1", RekeyRequest{GracePeriodSeconds: &grace}); err != nil {
		t.Fatal(err)
	}
	if gens, _ := db.Generations(ctx, "c1"); len(gens) != total {
		t.Fatalf("%d generations, want %d", len(gens), total)
	}
	st.reset()

	tests := []struct {
		name     string
		run      func() error
		wantRows int
	}{
		{"a sign reads the active generation only", func() error {
			res, err := a.Sign(as(member), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice"})})
			if err == nil && res.CAGeneration != total {
				err = fmt.Errorf("signed by generation %d", res.CAGeneration)
			}
			return err
		}, 1},
		{"a show reads the active generation and the one still trusted", func() error {
			res, err := a.CA(as(member), "c1")
			if err == nil && (res.Generation != total || strings.Count(res.TrustBundle, "BEGIN CERTIFICATE") != 2) {
				err = fmt.Errorf("show: generation %d, bundle %q", res.Generation, res.TrustBundle)
			}
			return err
		}, 2},
		{"a listing reads no generation", func() error {
			_, err := a.ListCertificates(as(member), "c1", ListRequest{Generation: total})
			return err
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); err != nil {
				t.Fatal(err)
			}
			if rows, full := st.reset(); rows != tt.wantRows || full != 0 {
				t.Fatalf("read %d generations (%d whole-history reads), want %d and none", rows, full, tt.wantRows)
			}
		})
	}
	t.Run("once the grace period is over a show reads the active generation only", func(t *testing.T) {
		clk.Advance(2 * time.Hour)
		res, err := a.CA(as(member), "c1")
		if err != nil || strings.Count(res.TrustBundle, "BEGIN CERTIFICATE") != 1 {
			t.Fatalf("show: %v, bundle of %d", err, strings.Count(res.TrustBundle, "BEGIN CERTIFICATE"))
		}
		if rows, full := st.reset(); rows != 1 || full != 0 {
			t.Fatalf("read %d generations (%d whole-history reads), want 1", rows, full)
		}
	})
}

// FuzzDecodeCursor checks that a cursor is accepted only in the one form
// encodeCursor gives it, so a tampered cursor is refused rather than
// silently read as another position.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor(store.CertificateKey{IssuedAt: testStart, Serial: "0a1b"}))
	f.Add("MXwyMDI2LTAzLTAxVDEyOjAwOjAwLjAwMDAwMDAwMFp8YWI")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := decodeCursor(s)
		if err != nil {
			return
		}
		if encodeCursor(k) != s || k.Serial == "" || k.IssuedAt.IsZero() {
			t.Fatalf("decodeCursor(%q) = %+v, which encodes as %q", s, k, encodeCursor(k))
		}
	})
}
