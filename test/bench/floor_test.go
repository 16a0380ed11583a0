package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// signFloor is the in-process floor of a sign (issue 13): what any CA that
// records its certificates must do per request, without HTTP, JSON,
// authentication, policy or logs: decode and parse the CSR, verify its
// signature, sign the certificate (x509.CreateCertificate, which also
// verifies the signature it made) and record it in the SQLite registry
// through the store's RecordCertificate (group commit, synchronous(FULL)),
// the store localrun uses by default.
type signFloor struct {
	csrs   [][]byte // PEM
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	db     *sqlite.DB
	next   atomic.Int64
}

// newSignFloor makes a P-256 CA and a SQLite registry in dir.
func newSignFloor(t *testing.T, dir string, csrs []string) *signFloor {
	t.Helper()
	f := &signFloor{caKey: p256(t)}
	for _, c := range csrs {
		f.csrs = append(f.csrs, []byte(c))
	}
	now := time.Now()
	der := selfSigned(t, f.caKey, "floor CA", now)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	f.caCert = cert
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "floor.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f.db = db
	if err := db.CreateCluster(ctx, store.Cluster{
		Name: "floor", Project: "bench", Generation: 1, KeyAlgorithm: "ecdsa-p256",
		CommonName: "floor CA", ValidityDays: 3650, CreatedAt: now,
	}, store.CAGeneration{
		Cluster: "floor", Generation: 1, KeyRef: "floor/1", CertificateDER: der, KeyAlgorithm: "ecdsa-p256",
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, CreatedAt: now,
	}); err != nil {
		t.Fatal(err)
	}
	return f
}

// sign is one request of the floor.
func (f *signFloor) sign() error {
	blk, _ := pem.Decode(f.csrs[int(f.next.Add(1))%len(f.csrs)])
	if blk == nil {
		return errors.New("no PEM CSR")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return err
	}
	if err := csr.CheckSignature(); err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	now := time.Now().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: csr.Subject.CommonName, Organization: csr.Subject.Organization},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(720 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.caCert, csr.PublicKey, f.caKey)
	if err != nil {
		return err
	}
	return f.db.RecordCertificate(context.Background(), store.IssuedCertificate{
		Cluster: "floor", Serial: hex.EncodeToString(serial.Bytes()), Generation: 1,
		Subject: tmpl.Subject.String(), Profile: "client", User: "bench", Project: "bench",
		NotBefore: tmpl.NotBefore, NotAfter: tmpl.NotAfter, IssuedAt: now,
		CertificateDER: der, RequireActive: true,
	})
}

// measure runs the floor with clients goroutines for d, its CPU being this
// process's (nothing else runs in it meanwhile).
func (f *signFloor) measure(clients int, d time.Duration) sample {
	return closedLoop(&server{pid: os.Getpid()}, clients, d, f.sign)
}
