package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// auditPage is one page of GET /v1/clusters/{cluster}/certificates.
type auditPage struct {
	Cluster      string `json:"cluster"`
	Certificates []struct {
		Serial       string `json:"serial"`
		Subject      string `json:"subject"`
		User         string `json:"requester_user"`
		CAGeneration int    `json:"ca_generation"`
		Status       string `json:"status"`
	} `json:"certificates"`
	Truncated bool   `json:"truncated"`
	Next      string `json:"next"`
}

// TestAuditListFindsAPrivilegedCertificateBehindCheapSigns is issue 9 §5:
// the listing showed the newest 1,000 entries only, so 1,000 cheap signs
// by a member hid a privileged certificate an admin issued just before.
// Through the real localrun binary and SQLite store: the serial filter
// finds it, the user filter finds it, and paging reaches it.
func TestAuditListFindsAPrivilegedCertificateBehindCheapSigns(t *testing.T) {
	s := startServer(t, serverOpts{})
	createCA(t, s, memberToken, "audit-1", nil)
	node := sign(t, s, adminToken, "audit-1", map[string]any{
		"csr": newCSR(t, p256(t), "system:node:n1", []string{"system:nodes"}), "profile": "client",
	})

	const cheap = 1005
	body := map[string]any{"csr": newCSR(t, p256(t), "alice", nil), "profile": "client"}
	var next, failed atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= cheap {
				r, err := tryDo("POST", s.URL+"/v1/clusters/audit-1/certificates", memberToken, body)
				if err != nil || r.Status != http.StatusCreated {
					failed.Add(1)
					firstErr.Do(func() { t.Errorf("cheap sign: %v %d %s", err, r.Status, r.Body) })
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d cheap signs failed", failed.Load())
	}

	list := func(t *testing.T, q url.Values) (auditPage, response) {
		t.Helper()
		r := do(t, "GET", s.URL+"/v1/clusters/audit-1/certificates?"+q.Encode(), readerToken, nil)
		var p auditPage
		if r.Status == http.StatusOK {
			r.json(t, &p)
		}
		return p, r
	}

	t.Run("the default page holds the newest 100 and a cursor", func(t *testing.T) {
		p, r := list(t, nil)
		if r.Status != 200 || len(p.Certificates) != 100 || !p.Truncated || p.Next == "" {
			t.Fatalf("%d: %d entries, truncated %v, next %q", r.Status, len(p.Certificates), p.Truncated, p.Next)
		}
		for _, c := range p.Certificates {
			if c.Serial == node.Serial {
				t.Fatal("the oldest certificate is on the first page")
			}
		}
	})
	t.Run("the serial filter finds it, in any case", func(t *testing.T) {
		p, r := list(t, url.Values{"serial": {strings.ToUpper(node.Serial)}})
		if r.Status != 200 || len(p.Certificates) != 1 || p.Next != "" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		c := p.Certificates[0]
		if c.Serial != node.Serial || c.User != "root" || c.Status != "valid" || !strings.Contains(c.Subject, "system:node:n1") {
			t.Fatalf("entry = %+v", c)
		}
	})
	t.Run("the user filter finds it", func(t *testing.T) {
		p, r := list(t, url.Values{"user": {"root"}})
		if r.Status != 200 || len(p.Certificates) != 1 || p.Certificates[0].Serial != node.Serial {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("paging by 1000 reaches it last, every entry once", func(t *testing.T) {
		q := url.Values{"limit": {"1000"}}
		seen := map[string]bool{}
		var last string
		pages := 0
		for {
			p, r := list(t, q)
			if r.Status != 200 {
				t.Fatalf("page %d: %d %s", pages+1, r.Status, r.Body)
			}
			pages++
			for _, c := range p.Certificates {
				if seen[c.Serial] {
					t.Fatalf("serial %s listed twice", c.Serial)
				}
				seen[c.Serial] = true
				last = c.Serial
			}
			if p.Next == "" {
				break
			}
			q.Set("next", p.Next)
		}
		if pages != 2 || len(seen) != cheap+1 || last != node.Serial {
			t.Fatalf("%d pages, %d entries, last %s; want 2, %d, %s", pages, len(seen), last, cheap+1, node.Serial)
		}
	})
	t.Run("a bad parameter or a tampered cursor is refused", func(t *testing.T) {
		first, _ := list(t, url.Values{"limit": {"1"}})
		tampered := []byte(first.Next)
		tampered[4] ^= 0x01
		for _, tt := range []struct {
			q         url.Values
			wantCode  string
			wantField string
		}{
			{url.Values{"limit": {"1001"}}, "invalid_field", "limit"},
			{url.Values{"status": {"gone"}}, "invalid_field", "status"},
			{url.Values{"generation": {"x"}}, "invalid_field", "generation"},
			{url.Values{"next": {string(tampered)}}, "invalid_field", "next"},
			{url.Values{"page": {"2"}}, "unknown_field", "page"},
		} {
			_, r := list(t, tt.q)
			var prob struct {
				Code   string `json:"code"`
				Errors []struct {
					Field string `json:"field"`
				} `json:"errors"`
			}
			r.json(t, &prob)
			if r.Status != 400 || prob.Code != tt.wantCode || len(prob.Errors) != 1 || prob.Errors[0].Field != tt.wantField {
				t.Errorf("%s: %d %s, want 400 %s naming %s", tt.q.Encode(), r.Status, r.Body, tt.wantCode, tt.wantField)
			}
		}
	})
}
