package ca

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// has reports whether the key named ref is held.
func (c *signerCache) has(ref string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		if e.ref == ref {
			return true
		}
	}
	return false
}

// keepingKeys is custody whose Destroy fails, as an HSM that is briefly
// unreachable when a rekey tries to destroy the retired key.
type keepingKeys struct{ Keys }

func (keepingKeys) Destroy(context.Context, string) error { return errors.New("custody unreachable") }

// twoInstances returns two Authorities over one SQLite file and one
// software master key, as two processes of one deployment would be.
func twoInstances(t *testing.T, keepRetired bool) (a, b *Authority, st *sqlite.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clusterkeys.db")
	master := newMasterKey(t)
	opts := Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	dbA, keysA := openInstance(t, path, master)
	dbB, custodyB := openInstance(t, path, master)
	var keysB Keys = custodyB
	if keepRetired {
		keysB = keepingKeys{keysB}
	}
	return New(dbA, keysA, opts), New(dbB, keysB, opts), dbA
}

func active(t *testing.T, st *sqlite.DB, cluster string) store.CAGeneration {
	t.Helper()
	_, g, err := st.ActiveCA(context.Background(), cluster)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestRekeyOnAnotherInstanceEvictsTheRetiredSigner: a rekey made by
// instance B is seen by instance A's next sign, which signs with the new
// generation and drops the retired key from memory, whether or not B could
// destroy it in custody. Before, A kept the retired key in its cache until
// the LRU pushed it out.
func TestRekeyOnAnotherInstanceEvictsTheRetiredSigner(t *testing.T) {
	for _, tc := range []struct {
		name        string
		keepRetired bool
	}{
		{"retired key destroyed by B", false},
		{"retired key left in custody by B", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, st := twoInstances(t, tc.keepRetired)
			if _, _, err := a.CreateCA(as(member), "c1", CreateRequest{}); err != nil {
				t.Fatal(err)
			}
			first, err := a.Sign(as(member), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice"})})
			if err != nil {
				t.Fatal(err)
			}
			res := first
			g1 := active(t, st, "c1")
			if res.CAGeneration != 1 || !a.signers.has(g1.KeyRef) {
				t.Fatalf("A signed with generation %d, cached %v; want 1, true", res.CAGeneration, a.signers.has(g1.KeyRef))
			}

			if _, err := b.Rekey(as(member), "c1", RekeyRequest{}); err != nil {
				t.Fatal(err)
			}
			g2 := active(t, st, "c1")

			res, err = a.Sign(as(member), "c1", SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice"})})
			if err != nil {
				t.Fatal(err)
			}
			if res.CAGeneration != 2 {
				t.Fatalf("A signed with generation %d after B's rekey, want 2", res.CAGeneration)
			}
			verifyUnder(t, res.Certificate, g2.CertificateDER)
			// A remembered generation 1 and signed with it first: the
			// store refused that certificate, which is nowhere.
			certs, err := st.Certificates(context.Background(), store.CertificateQuery{Cluster: "c1", Limit: 10, Now: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, c := range certs {
				got[c.Serial] = true
			}
			if len(certs) != 2 || !got[res.Serial] || !got[first.Serial] {
				t.Fatalf("registry holds %v, want the two certificates handed out (%s, %s)", got, first.Serial, res.Serial)
			}
			if a.signers.has(g1.KeyRef) {
				t.Error("A still holds the retired generation-1 key after signing with generation 2")
			}
			if !a.signers.has(g2.KeyRef) {
				t.Error("A did not cache the generation-2 key")
			}

			// A sign that read generation 1 just before the rekey loads
			// its key (or fails, when destroyed) but never caches it.
			_, err = a.signer(context.Background(), g1)
			if tc.keepRetired && err != nil {
				t.Fatalf("load the retired key left in custody: %v", err)
			}
			if !tc.keepRetired && err == nil {
				t.Fatal("loaded the retired key B destroyed")
			}
			if a.signers.has(g1.KeyRef) || !a.signers.has(g2.KeyRef) {
				t.Errorf("after a stale load: retired cached %v, active cached %v; want false, true",
					a.signers.has(g1.KeyRef), a.signers.has(g2.KeyRef))
			}
		})
	}
}

func verifyUnder(t *testing.T, leafPEM string, caDER []byte) {
	t.Helper()
	blk, _ := pem.Decode([]byte(leafPEM))
	if blk == nil {
		t.Fatal("no PEM certificate")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("the certificate does not verify under the active CA: %v", err)
	}
}

func TestSignerCacheKeepsOnlyTheNewestGenerationOfACluster(t *testing.T) {
	gen := func(cluster string, g int) store.CAGeneration {
		return store.CAGeneration{Cluster: cluster, Generation: g, KeyRef: cluster + "/" + string(rune('0'+g))}
	}
	for _, tc := range []struct {
		name     string
		put, get []store.CAGeneration
		hit      []bool
		cached   []string
	}{
		{"a newer generation evicts the older on get",
			[]store.CAGeneration{gen("c", 1)}, []store.CAGeneration{gen("c", 2), gen("c", 1)},
			[]bool{false, false}, nil},
		{"an older generation is not cached over a newer",
			[]store.CAGeneration{gen("c", 2), gen("c", 1)}, []store.CAGeneration{gen("c", 1), gen("c", 2)},
			[]bool{false, true}, []string{"c/2"}},
		{"a newer put replaces the older",
			[]store.CAGeneration{gen("c", 1), gen("c", 2)}, []store.CAGeneration{gen("c", 2)},
			[]bool{true}, []string{"c/2"}},
		{"clusters are independent",
			[]store.CAGeneration{gen("c", 1), gen("d", 3)}, []store.CAGeneration{gen("c", 1), gen("d", 3)},
			[]bool{true, true}, []string{"c/1", "d/3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newSignerCache(8)
			for _, g := range tc.put {
				c.put(g, caKey{})
			}
			for i, g := range tc.get {
				if _, ok := c.get(g); ok != tc.hit[i] {
					t.Errorf("get(%s) hit = %v, want %v", g.KeyRef, ok, tc.hit[i])
				}
			}
			if c.len() != len(tc.cached) {
				t.Errorf("len = %d, want %d", c.len(), len(tc.cached))
			}
			for _, ref := range tc.cached {
				if !c.has(ref) {
					t.Errorf("%s not cached", ref)
				}
			}
		})
	}
}
