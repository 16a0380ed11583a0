package tlsbundle

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/need"
)

// testPassphrase encrypts the fixture keys; it is a test value, not a secret.
const testPassphrase = "correct horse battery staple"

// pki is the fixture corpus: a PKI made in Go, converted by
// testdata/gen.sh with openssl into the other input forms.
type pki struct {
	dir string
	now time.Time

	rootKey, inter1Key, inter2Key, leafKey crypto.Signer
	root, inter1, inter2, leaf             *x509.Certificate

	files map[string]string // PEM or base64 of named fixtures

	opensslErr error // why the openssl half is missing, if it is
}

var (
	// fixtureLight skips the RSA fixtures, whose key generation takes tens
	// of seconds in a coverage-instrumented fuzz worker.
	fixtureLight bool
	fixtureOnce  sync.Once
	fixture      *pki
	fixtureErr   error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture != nil {
		_ = os.RemoveAll(fixture.dir)
	}
	os.Exit(code)
}

// corpus returns the shared fixture corpus, building it on first use.
func corpus(tb testing.TB) *pki {
	tb.Helper()
	fixtureOnce.Do(func() { fixture, fixtureErr = buildPKI() })
	if fixtureErr != nil {
		tb.Fatalf("building fixtures: %v", fixtureErr)
	}
	return fixture
}

// openssl returns the named openssl-made fixture, failing under CI=true
// and skipping elsewhere when openssl is not installed.
func (p *pki) openssl(tb testing.TB, name string) string {
	tb.Helper()
	if p.opensslErr != nil {
		need.Missing(tb, fmt.Sprintf("openssl fixtures unavailable (%v): install openssl (apt-get install openssl)", p.opensslErr))
	}
	s, ok := p.files[name]
	if !ok {
		tb.Fatalf("no fixture %q", name)
	}
	return s
}

// get returns a Go-made fixture.
func (p *pki) get(tb testing.TB, name string) string {
	tb.Helper()
	s, ok := p.files[name]
	if !ok {
		tb.Fatalf("no fixture %q", name)
	}
	return s
}

type certSpec struct {
	cn        string
	dns       []string
	ips       []net.IP
	ca        bool
	noCAFlag  bool // BasicConstraints present with CA:FALSE on an issuing cert
	notBefore time.Time
	notAfter  time.Time
	sigAlg    x509.SignatureAlgorithm
	key       crypto.Signer
}

func newECKey() crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// issue makes a certificate for spec, signed by parent (self-signed when
// parent is nil).
func issue(spec certSpec, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, crypto.Signer, error) {
	key := spec.key
	if key == nil {
		key = newECKey()
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.cn, Organization: []string{"clusterkeys tests"}},
		DNSNames:              spec.dns,
		IPAddresses:           spec.ips,
		NotBefore:             spec.notBefore,
		NotAfter:              spec.notAfter,
		SignatureAlgorithm:    spec.sigAlg,
		BasicConstraintsValid: true,
	}
	if spec.ca {
		tpl.IsCA = true
		tpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	} else {
		tpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		tpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	if spec.noCAFlag {
		tpl.IsCA = false
		tpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign
	}
	if parent == nil {
		parent, parentKey = tpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create %q: %w", spec.cn, err)
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

func certPEM(certs ...*x509.Certificate) string {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.String()
}

func pkcs8PEM(k crypto.Signer) string {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func buildPKI() (*pki, error) {
	dir, err := os.MkdirTemp("", "tlsbundle-fixtures-")
	if err != nil {
		return nil, fmt.Errorf("fixture dir: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	p := &pki{dir: dir, now: now, files: map[string]string{}}
	long := func(s certSpec) certSpec {
		if s.notBefore.IsZero() {
			s.notBefore = now.Add(-time.Hour)
		}
		if s.notAfter.IsZero() {
			s.notAfter = now.Add(365 * 24 * time.Hour)
		}
		return s
	}
	mk := func(name string, spec certSpec, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, crypto.Signer) {
		if err != nil {
			return nil, nil
		}
		var c *x509.Certificate
		var k crypto.Signer
		c, k, err = issue(long(spec), parent, parentKey)
		if err == nil {
			p.files[name+".pem"] = certPEM(c)
			p.files[name+".key"] = pkcs8PEM(k)
		}
		return c, k
	}
	p.root, p.rootKey = mk("root", certSpec{cn: "Test Root A", ca: true}, nil, nil)
	p.inter1, p.inter1Key = mk("inter1", certSpec{cn: "Test Intermediate A1", ca: true}, p.root, p.rootKey)
	p.inter2, p.inter2Key = mk("inter2", certSpec{cn: "Test Intermediate A2", ca: true}, p.inter1, p.inter1Key)
	p.leaf, p.leafKey = mk("leaf", certSpec{cn: "www.example.test", dns: []string{"www.example.test", "example.test"}}, p.inter2, p.inter2Key)

	// Another hierarchy, not trusted by ca_bundle = root.pem.
	rootB, rootBKey := mk("rootB", certSpec{cn: "Test Root B", ca: true}, nil, nil)
	interB, interBKey := mk("interB", certSpec{cn: "Test Intermediate B", ca: true}, rootB, rootBKey)
	mk("leafB", certSpec{cn: "b.example.test", dns: []string{"b.example.test"}}, interB, interBKey)

	// One certificate per problem.
	mk("leafExpired", certSpec{cn: "old.example.test", dns: []string{"old.example.test"},
		notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-24 * time.Hour)}, p.inter2, p.inter2Key)
	mk("leafFuture", certSpec{cn: "new.example.test", dns: []string{"new.example.test"},
		notBefore: now.Add(24 * time.Hour)}, p.inter2, p.inter2Key)
	interExp, interExpKey := mk("interExpired", certSpec{cn: "Test Intermediate Expired", ca: true,
		notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)}, p.root, p.rootKey)
	mk("leafUnderExpired", certSpec{cn: "x.example.test", dns: []string{"x.example.test"}}, interExp, interExpKey)
	interFut, interFutKey := mk("interFuture", certSpec{cn: "Test Intermediate Future", ca: true,
		notBefore: now.Add(time.Hour)}, p.root, p.rootKey)
	mk("leafUnderFuture", certSpec{cn: "f.example.test", dns: []string{"f.example.test"}}, interFut, interFutKey)
	interNotCA, interNotCAKey := mk("interNotCA", certSpec{cn: "Test Not A CA", noCAFlag: true}, p.root, p.rootKey)
	mk("leafUnderNotCA", certSpec{cn: "n.example.test", dns: []string{"n.example.test"}}, interNotCA, interNotCAKey)
	mk("leafCA", certSpec{cn: "ca.example.test", dns: []string{"ca.example.test"}, ca: true}, p.inter2, p.inter2Key)
	mk("leafNoSubject", certSpec{ips: []net.IP{net.ParseIP("192.0.2.10")}}, p.inter2, p.inter2Key)
	mk("leafCNOnly", certSpec{cn: "cn-only.example.test"}, p.inter2, p.inter2Key)
	mk("leafSHA1", certSpec{cn: "sha1.example.test", dns: []string{"sha1.example.test"}, sigAlg: x509.ECDSAWithSHA1}, p.inter2, p.inter2Key)
	mk("selfSigned", certSpec{cn: "self.example.test", dns: []string{"self.example.test"}}, nil, nil)
	mk("unrelated", certSpec{cn: "Test Unrelated CA", ca: true}, nil, nil)
	if err != nil {
		return nil, err
	}
	if !fixtureLight {
		rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			return nil, fmt.Errorf("rsa key: %w", err)
		}
		mk("leafWeak", certSpec{cn: "weak.example.test", dns: []string{"weak.example.test"}, key: rsa1024}, p.inter2, p.inter2Key)
		rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("rsa key: %w", err)
		}
		mk("leafRSA", certSpec{cn: "rsa.example.test", dns: []string{"rsa.example.test"}, key: rsa2048}, p.inter2, p.inter2Key)
		p.files["leafRSA.pkcs1"] = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsa2048)}))
	}
	for i := range MaxIntermediates + 1 {
		mk(fmt.Sprintf("many%d", i), certSpec{cn: fmt.Sprintf("Test Many %d", i), ca: true}, p.root, p.rootKey)
	}
	if err != nil {
		return nil, err
	}

	// A certificate whose RSA public key (just a number, no primes behind
	// it) is far above MaxRSABits.
	hugeN, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64<<10))
	if err != nil {
		return nil, err
	}
	hugeN.SetBit(hugeN, 64<<10, 1)
	hugeN.SetBit(hugeN, 0, 1)
	hugeTpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "huge.example.test"},
		DNSNames: []string{"huge.example.test"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	hugeDER, err := x509.CreateCertificate(rand.Reader, hugeTpl, p.inter2, &rsa.PublicKey{N: hugeN, E: 65537}, p.inter2Key)
	if err != nil {
		return nil, fmt.Errorf("huge RSA certificate: %w", err)
	}
	p.files["leafHugeRSA.pem"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hugeDER}))

	// Go-written key and certificate forms.
	sec1, err := x509.MarshalECPrivateKey(p.leafKey.(*ecdsa.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("sec1: %w", err)
	}
	p.files["leaf.sec1"] = string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	p8, _ := x509.MarshalPKCS8PrivateKey(p.leafKey)
	p.files["leaf.key.b64"] = base64.StdEncoding.EncodeToString(p8)
	p.files["leaf.der.b64"] = base64.StdEncoding.EncodeToString(p.leaf.Raw)
	p.files["chain"] = certPEM(p.inter2, p.inter1)

	// The openssl half.
	for _, name := range []string{"root", "inter1", "inter2", "leaf"} {
		for _, ext := range []string{".pem", ".key"} {
			if werr := os.WriteFile(filepath.Join(dir, name+ext), []byte(p.files[name+ext]), 0o600); werr != nil {
				return nil, fmt.Errorf("write fixture: %w", werr)
			}
		}
	}
	p.opensslErr = runGen(dir)
	if p.opensslErr == nil {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("read fixtures: %w", err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, fmt.Errorf("read fixture: %w", err)
			}
			if bytes.Contains(b, []byte("-----BEGIN")) {
				p.files[e.Name()] = string(b)
			} else {
				p.files[e.Name()] = base64.StdEncoding.EncodeToString(b)
			}
		}
		if err := p.craftSlowKeys(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func runGen(dir string) error {
	if _, err := exec.LookPath("openssl"); err != nil {
		return err
	}
	out, err := exec.Command("bash", "testdata/gen.sh", dir, testPassphrase).CombinedOutput()
	if err != nil {
		return fmt.Errorf("testdata/gen.sh: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// craftSlowKeys rewrites the KDF parameters of openssl-made encrypted keys
// to a work factor the validator must refuse (computing them here would
// take as long as the validator refuses to).
func (p *pki) craftSlowKeys() error {
	rewrite := func(src, dst string, edit func(kdf *pkix.AlgorithmIdentifier) error) error {
		block, _ := pem.Decode([]byte(p.files[src]))
		if block == nil {
			return fmt.Errorf("fixture %s is not PEM", src)
		}
		var epki encryptedPrivateKeyInfo
		if _, err := asn1.Unmarshal(block.Bytes, &epki); err != nil {
			return fmt.Errorf("fixture %s: %w", src, err)
		}
		var params pbes2Params
		if _, err := asn1.Unmarshal(epki.Algo.Parameters.FullBytes, &params); err != nil {
			return fmt.Errorf("fixture %s: %w", src, err)
		}
		if err := edit(&params.KDF); err != nil {
			return err
		}
		pb, err := asn1.Marshal(params)
		if err != nil {
			return err
		}
		epki.Algo.Parameters = asn1.RawValue{FullBytes: pb}
		der, err := asn1.Marshal(epki)
		if err != nil {
			return err
		}
		p.files[dst] = string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}))
		return nil
	}
	for _, c := range []struct {
		src, dst, what string
		edit           func(kdf *pkix.AlgorithmIdentifier) error
	}{
		{"key.p8.aes256-sha256.pem", "key.p8.slow-pbkdf2.pem", "slow pbkdf2",
			kdfParams(func(kp *pbkdf2Params) { kp.Iterations = 50_000_000 })},
		// The former limit (1 M iterations, each counted once) let these two
		// through; the budget refuses them before deriving anything.
		{"key.p8.aes256-sha256.pem", "key.p8.1m-pbkdf2.pem", "1M pbkdf2",
			kdfParams(func(kp *pbkdf2Params) { kp.Iterations = 1_000_000 })},
		// HMAC-SHA1 (the default PRF) makes a 32-byte key in two blocks.
		{"key.p8.aes256-sha256.pem", "key.p8.400k-sha1-aes256.pem", "sha1 pbkdf2",
			kdfParams(func(kp *pbkdf2Params) { kp.Iterations, kp.PRF = 400_000, pkix.AlgorithmIdentifier{} })},
		{"key.p8.scrypt.pem", "key.p8.slow-scrypt.pem", "slow scrypt",
			kdfParams(func(sp *scryptParams) { sp.N = 1 << 20 })},
	} {
		if err := rewrite(c.src, c.dst, c.edit); err != nil {
			return fmt.Errorf("craft %s: %w", c.what, err)
		}
	}
	return nil
}

// kdfParams returns an edit of a key derivation's parameters: decoded as a
// P, changed by edit, encoded again.
func kdfParams[P any](edit func(*P)) func(kdf *pkix.AlgorithmIdentifier) error {
	return func(kdf *pkix.AlgorithmIdentifier) error {
		var p P
		if _, err := asn1.Unmarshal(kdf.Parameters.FullBytes, &p); err != nil {
			return err
		}
		edit(&p)
		b, err := asn1.Marshal(p)
		kdf.Parameters = asn1.RawValue{FullBytes: b}
		return err
	}
}
