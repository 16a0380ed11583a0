package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCheckCertificateQuery(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ok := CertificateQuery{Cluster: "c1", Limit: 10}
	with := func(f func(*CertificateQuery)) CertificateQuery {
		q := ok
		f(&q)
		return q
	}
	tests := []struct {
		name string
		q    CertificateQuery
		want string // "" for none
	}{
		{"cluster and limit", ok, ""},
		{"every status at an instant", with(func(q *CertificateQuery) { q.Status, q.Now = StatusExpired, now }), ""},
		{"no cluster", with(func(q *CertificateQuery) { q.Cluster = "" }), "a cluster is required"},
		{"no limit", with(func(q *CertificateQuery) { q.Limit = 0 }), "limit 0: must be positive"},
		{"a position without a serial", with(func(q *CertificateQuery) { q.After = &CertificateKey{IssuedAt: now} }), "invalid position"},
		{"a position past 9999", with(func(q *CertificateQuery) {
			q.After = &CertificateKey{IssuedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Serial: "01"}
		}), "invalid position"},
		{"a status without an instant", with(func(q *CertificateQuery) { q.Status = StatusValid }), `status "valid" needs a valid instant`},
		{"an unknown status", with(func(q *CertificateQuery) { q.Status, q.Now = "lost", now }), `unknown status "lost"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckCertificateQuery(tt.q)
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("CheckCertificateQuery = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestRevokeChain(t *testing.T) {
	// chain: a → b → c (each replaced by the next); b is already revoked.
	successor := map[string]string{"a": "b", "b": "c"}
	predecessor := map[string]string{"b": "a", "c": "b"}
	long := func(s string) string { // an endless chain 0 → 1 → 2 → …
		var n int
		fmt.Sscan(s, &n)
		return fmt.Sprint(n + 1)
	}
	tests := []struct {
		name        string
		serial      string
		replaced    func(string) (string, error)
		next        func(string) string
		revoked     map[string]bool
		want        []string
		wantChanged bool
	}{
		{"from the middle, the whole chain", "b", func(s string) (string, error) { return predecessor[s], nil },
			func(s string) string { return successor[s] }, map[string]bool{"b": true}, []string{"a", "b", "c"}, true},
		{"all revoked already", "c", func(s string) (string, error) { return predecessor[s], nil },
			func(s string) string { return successor[s] }, map[string]bool{"a": true, "b": true, "c": true}, []string{"a", "b", "c"}, false},
		{"an endless chain stops at MaxChain", "5", func(string) (string, error) { return "", nil },
			long, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed, err := RevokeChain(tt.serial, tt.replaced, func(s string) (string, bool, error) {
				return tt.next(s), !tt.revoked[s], nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == nil {
				if len(got) != MaxChain || !slices.IsSorted(got) {
					t.Fatalf("RevokeChain = %d serials (sorted %v), want %d sorted", len(got), slices.IsSorted(got), MaxChain)
				}
			} else if !slices.Equal(got, tt.want) {
				t.Fatalf("RevokeChain = %v, want %v", got, tt.want)
			}
			if changed != tt.wantChanged {
				t.Fatalf("changed = %v, want %v", changed, tt.wantChanged)
			}
		})
	}
	t.Run("an error stops the walk", func(t *testing.T) {
		boom := errors.New("boom")
		got, _, err := RevokeChain("a", func(string) (string, error) { return "", boom }, nil)
		if !errors.Is(err, boom) || got != nil {
			t.Fatalf("RevokeChain = %v, %v; want nil, boom", got, err)
		}
	})
}

func TestValidInstant(t *testing.T) {
	tests := []struct {
		name string
		t    time.Time
		want bool
	}{
		{"the zero time", time.Time{}, false},
		{"an instant", time.Date(2026, 11, 30, 15, 0, 0, 0, time.UTC), true},
		{"year 10000", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"year -1", time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidInstant(tt.t); got != tt.want {
				t.Fatalf("ValidInstant(%v) = %v, want %v", tt.t, got, tt.want)
			}
		})
	}
}

func TestCheckKEKTimes(t *testing.T) {
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	ok := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	version := KEKVersion{Version: 1, KeyRef: "kek/k/1", KeyID: "ck1:k:1", CreatedAt: ok}
	tests := []struct {
		name string
		err  error
		want bool // whether the check passes
	}{
		{"create", CheckNewKEK(KEK{Name: "k", ActiveVersion: 1, CreatedAt: ok}, version), true},
		{"create, the KEK far", CheckNewKEK(KEK{Name: "k", ActiveVersion: 1, CreatedAt: far}, version), false},
		{"rotate", CheckKEKRotation("k", 0, version), true},
		{"rotate, the version far", CheckKEKRotation("k", 0, KEKVersion{Version: 1, KeyRef: "r", KeyID: "i", CreatedAt: far}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if (tt.err == nil) != tt.want {
				t.Fatalf("error %v, want passing %v", tt.err, tt.want)
			}
		})
	}
}
