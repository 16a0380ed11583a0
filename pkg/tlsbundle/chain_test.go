package tlsbundle

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"reflect"
	"testing"
	"time"
)

// longWay makes Validate build and check every chain without anchoredChain,
// as it did before, until the test ends.
func longWay(t *testing.T) {
	t.Helper()
	anchorChain = func(*x509.Certificate, []certEntry, []*x509.Certificate, time.Time, *pathCache) ([]chainLink, *x509.Certificate) {
		return nil, nil
	}
	t.Cleanup(func() { anchorChain = anchoredChain })
}

// TestAnchoredChainReportsWhatTheLongWayReports validates every case of
// validateCases, as given and with the fixture root added to ca_bundle,
// and also at times before and after the chain's validity, once with the
// anchored shortcut and once the long way: the reports must be identical.
func TestAnchoredChainReportsWhatTheLongWayReports(t *testing.T) {
	p := corpus(t)
	eachCaseInput(t, p, func(t *testing.T, in Input) {
		for _, now := range []time.Time{p.now, p.now.Add(-30 * 365 * 24 * time.Hour), p.now.Add(30 * 365 * 24 * time.Hour)} {
			fast := Validate(context.Background(), in, now)
			var slow Report
			func() {
				longWay(t)
				slow = Validate(context.Background(), in, now)
				anchorChain = anchoredChain
			}()
			if !reflect.DeepEqual(fast, slow) {
				t.Errorf("at %s the anchored report differs from the long way's:\nanchored %+v\nlong way %+v", now, fast, slow)
			}
		}
	})
}

// TestAnchoredChainTakesAValidBundle checks that a valid bundle anchored in
// ca_bundle takes the shortcut (one path validation, no signature checked
// twice) and that an invalid one does not.
func TestAnchoredChainTakesAValidBundle(t *testing.T) {
	p := corpus(t)
	leaf, inter2, inter1 := p.leaf, p.inter2, p.inter1
	inters := []certEntry{{cert: inter1, index: 0, field: "intermediates[0]"}, {cert: inter2, index: 1, field: "intermediates[1]"}}
	for _, tc := range []struct {
		name   string
		roots  []*x509.Certificate
		inters []certEntry
		now    time.Time
		want   bool
	}{
		{"valid chain, intermediates out of order", []*x509.Certificate{p.root}, inters, p.now, true},
		{"no ca_bundle", nil, inters, p.now, false},
		{"a missing intermediate", []*x509.Certificate{p.root}, inters[:1], p.now, false},
		{"expired", []*x509.Certificate{p.root}, inters, p.now.Add(30 * 365 * 24 * time.Hour), false},
		{"root not in ca_bundle", []*x509.Certificate{leaf}, inters, p.now, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			links, root := anchoredChain(leaf, tc.inters, tc.roots, tc.now, nil)
			if got := root != nil; got != tc.want {
				t.Fatalf("anchored = %v, want %v", got, tc.want)
			}
			if tc.want && (len(links) != 3 || links[1].cert != inter2 || links[2].cert != inter1 || root != p.root) {
				t.Errorf("chain %v to %v, want leaf, inter2, inter1 to the root", links, root.Subject)
			}
		})
	}
}

// TestSEC1ShapedKeysOnly checks that only SEC1 keys take parseKeyDER's
// SEC1-first shortcut, and that every form still parses to its key.
func TestSEC1ShapedKeysOnly(t *testing.T) {
	p := corpus(t)
	for _, tc := range []struct {
		name string
		pem  string
		sec1 bool
	}{
		{"SEC1", p.get(t, "leaf.sec1"), true},
		{"PKCS#8", p.get(t, "leaf.key"), false},
		{"PKCS#1", p.get(t, "leafRSA.pkcs1"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			block, _ := pem.Decode([]byte(tc.pem))
			if block == nil {
				t.Fatal("fixture is not PEM")
			}
			if got := sec1Shaped(block.Bytes); got != tc.sec1 {
				t.Errorf("sec1Shaped = %v, want %v", got, tc.sec1)
			}
			if _, err := parseKeyDER(block.Bytes); err != nil {
				t.Errorf("parseKeyDER: %v", err)
			}
		})
	}
	for _, der := range [][]byte{nil, {0x30}, {0x30, 0x82}, {0x30, 0x03, 0x02, 0x01}, {0x30, 0x05, 0x02, 0x81, 0x01, 0x01, 0x04}} {
		if sec1Shaped(der) {
			t.Errorf("sec1Shaped(%x) = true", der)
		}
	}
}

// TestValidAnchoredBundleValidatesThePathOnce counts the x509 path
// validations of a valid bundle anchored in ca_bundle: one (each signature
// checked once), where the long way runs its own link checks and then one.
func TestValidAnchoredBundleValidatesThePathOnce(t *testing.T) {
	p := corpus(t)
	calls := 0
	verifyChain = func(c *x509.Certificate, opts x509.VerifyOptions) ([][]*x509.Certificate, error) {
		calls++
		return c.Verify(opts)
	}
	t.Cleanup(func() { verifyChain = (*x509.Certificate).Verify })
	in := good(t, p)
	in.CABundle = p.get(t, "root.pem")
	if r := Validate(context.Background(), in, p.now); !r.Valid || len(r.Chain) != 4 || !r.Chain[3].Trusted {
		t.Fatalf("report: valid %v errors %+v chain %+v", r.Valid, r.Errors, r.Chain)
	}
	if calls != 1 {
		t.Errorf("%d path validations, want 1", calls)
	}
}
