package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clusterkeys/clusterkeys/internal/need"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/postgres"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// pgServer is a private PostgreSQL server started by
// test/scripts/postgres.sh for one test: a unix socket only, no TCP.
type pgServer struct {
	DSN string
	dir string
}

// startPostgres starts a PostgreSQL server of its own for t (initdb and
// start take a few seconds). Without PostgreSQL the test skips, naming the
// package; with CI=true it fails.
func startPostgres(t testing.TB) *pgServer {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	installOrMissing(t, len(bins) > 0, "postgres.sh", "PostgreSQL is missing: apt-get install postgresql (or make deps)")
	// Run as root, the server runs as nobody: its directory must be
	// reachable, which t.TempDir's parent (0700) is not.
	dir, err := os.MkdirTemp("", "ck-e2e-pg-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	p := &pgServer{dir: dir}
	t.Cleanup(func() {
		p.stop(t)
		os.RemoveAll(dir)
	})
	p.start(t)
	return p
}

// start starts the server (again, after stop: same data, same socket).
func (p *pgServer) start(t testing.TB) {
	t.Helper()
	var stderr bytes.Buffer
	cmd := scriptCmd("postgres.sh", "start", p.dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("postgres.sh start: %v: %s", err, stderr.String())
	}
	p.DSN = strings.TrimSpace(string(out))
}

// stop stops the server (fast shutdown: open connections are cut).
func (p *pgServer) stop(t testing.TB) {
	t.Helper()
	if out, err := scriptCmd("postgres.sh", "stop", p.dir).CombinedOutput(); err != nil {
		t.Errorf("postgres.sh stop: %v: %s", err, out)
	}
}

// open opens the store directly, as a third instance would, to check what
// the HTTP answers said against what is stored.
func (p *pgServer) open(t testing.TB) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), p.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// sharedConfig writes what every instance on one PostgreSQL shares: the
// store file holding the DSN, one software master key, one token file; and
// returns the localrun flags that use them.
func sharedConfig(t testing.TB, pg *pgServer) []string {
	t.Helper()
	dir := t.TempDir()
	storeFile := filepath.Join(dir, "store")
	if err := os.WriteFile(storeFile, []byte(pg.DSN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mk := make([]byte, 32)
	if _, err := rand.Read(mk); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "master.key")
	if err := os.WriteFile(keyFile, mk, 0o600); err != nil {
		t.Fatal(err)
	}
	tokens := writeTokens(t, dir, testTokens...)
	return []string{"--store-file", storeFile, "--master-key-file", keyFile, "--token-auth-file", tokens, "--keys", "software"}
}

// chain checks, in the store, that cluster's generations are 1..n without
// a gap, that only n is active, and that every certificate of a retired
// generation is revoked (grace 0 everywhere). It returns the CA
// certificate of each generation.
func chain(t *testing.T, db *postgres.DB, cluster string, n int) map[int]*x509.Certificate {
	t.Helper()
	ctx := context.Background()
	gens, err := db.Generations(ctx, cluster)
	if err != nil {
		t.Fatal(err)
	}
	if len(gens) != n {
		t.Fatalf("%d generations stored, the CA is at %d: a gap or a phantom", len(gens), n)
	}
	cas := map[int]*x509.Certificate{}
	for i, g := range gens { // newest first
		if want := n - i; g.Generation != want {
			t.Fatalf("generation %d at position %d, want %d: gap or fork", g.Generation, i, want)
		}
		if retired := !g.RetiredAt.IsZero(); retired != (g.Generation != n) {
			t.Fatalf("generation %d of %d: retired %v", g.Generation, n, retired)
		}
		c, err := x509.ParseCertificate(g.CertificateDER)
		if err != nil {
			t.Fatal(err)
		}
		cas[g.Generation] = c
	}
	certs, err := db.Certificates(ctx, store.CertificateQuery{Cluster: cluster, Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range certs {
		if c.Generation != n && c.RevokedAt.IsZero() {
			t.Fatalf("certificate %s of retired generation %d is not revoked", c.Serial, c.Generation)
		}
	}
	return cas
}

// signedBy checks that a sign answer verifies against the CA certificate of
// the generation it names, and that the answer's ca_certificate is that one.
func signedBy(t *testing.T, s signed, cas map[int]*x509.Certificate) {
	t.Helper()
	ca, ok := cas[s.CAGeneration]
	if !ok {
		t.Fatalf("certificate %s names generation %d, which is not stored", s.Serial, s.CAGeneration)
	}
	b, _ := pem.Decode([]byte(s.CACertificate))
	if b == nil || !bytes.Equal(b.Bytes, ca.Raw) {
		t.Fatalf("certificate %s: ca_certificate is not generation %d's", s.Serial, s.CAGeneration)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := parseCert(t, s.Certificate).Verify(x509.VerifyOptions{
		Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		t.Fatalf("certificate %s does not verify against generation %d: %v", s.Serial, s.CAGeneration, err)
	}
}

// storm is the outcome of concurrent rekeys.
type storm struct {
	mu       sync.Mutex
	answered map[int]string // generation → the certificate the 200 gave
	twice    []int
	ok, lost atomic.Int64 // 200s; requests without an answer (killed server)
	conflict atomic.Int64 // 409s
	// survived counts the 200s of the first instance once midway ran.
	survived atomic.Int64
	other    []string
}

func (st *storm) record(r response, err error) {
	switch {
	case err != nil:
		st.lost.Add(1)
	case r.Status == 200:
		var ca caResource
		if json.Unmarshal(r.Body, &ca) != nil {
			st.lost.Add(1)
			return
		}
		st.mu.Lock()
		if _, dup := st.answered[ca.Generation]; dup {
			st.twice = append(st.twice, ca.Generation)
		}
		st.answered[ca.Generation] = ca.Certificate
		st.mu.Unlock()
		st.ok.Add(1)
	case r.Status == 409:
		st.conflict.Add(1)
	default:
		st.mu.Lock()
		st.other = append(st.other, string(r.Body))
		st.mu.Unlock()
	}
}

// signer signs on the servers in turn until stop closes, and keeps what
// the 201s gave. Other answers during a storm (409 when a rekey overtook
// the sign, errors from a killed server) are counted, not failures.
func signer(t *testing.T, servers []*server, cluster, csr string, stop <-chan struct{}, out *[]signed, mu *sync.Mutex, refused *atomic.Int64) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		r, err := tryDo("POST", servers[i%len(servers)].URL+"/v1/clusters/"+cluster+"/certificates", memberToken,
			map[string]any{"csr": csr, "profile": "client"})
		if err != nil || r.Status != 201 {
			refused.Add(1)
			continue
		}
		var s signed
		if json.Unmarshal(r.Body, &s) != nil {
			t.Errorf("sign answer %s", r.Body)
			return
		}
		mu.Lock()
		*out = append(*out, s)
		mu.Unlock()
	}
}

// TestTwoInstancesOnOnePostgres runs two `localrun serve` processes on one
// PostgreSQL database, one master key file and one token file: a CA
// created through one signs through the other; 100 concurrent rekeys spread
// over both give strictly sequential generations, none answered twice,
// none lost, while signs on both verify against the generation they name;
// then one instance is SIGKILLed mid-storm and the other carries on with
// the state consistent.
func TestTwoInstancesOnOnePostgres(t *testing.T) {
	pg := startPostgres(t)
	shared := sharedConfig(t, pg)
	a := startServer(t, serverOpts{args: shared})
	b := startServer(t, serverOpts{args: shared})
	servers := []*server{a, b}
	db := pg.open(t)

	t.Run("a CA created through one instance signs through the other", func(t *testing.T) {
		ca := createCA(t, a, memberToken, "across", nil)
		var viaB caResource
		do(t, "GET", b.URL+"/v1/clusters/across/ca", memberToken, nil).json(t, &viaB)
		if viaB.Certificate != ca.Certificate || viaB.Generation != 1 {
			t.Fatalf("the other instance sees generation %d, a different certificate: %v", viaB.Generation, viaB.Certificate != ca.Certificate)
		}
		c := sign(t, b, memberToken, "across", map[string]any{"csr": newCSR(t, p256(t), "alice", nil), "profile": "client"})
		if err := verifies(t, c.Certificate, ca.TrustBundle, x509.ExtKeyUsageClientAuth); err != nil || c.CAGeneration != 1 {
			t.Fatalf("signed through the other instance: generation %d, %v", c.CAGeneration, err)
		}
	})

	createCA(t, a, memberToken, "storm", nil)
	csr := newCSR(t, p256(t), "alice", nil)
	var (
		signs   []signed
		signMu  sync.Mutex
		refused atomic.Int64
	)
	// runStorm sends n rekeys with `clients` of them in flight at once, to
	// the instances in turn, while two clients sign on both; midway runs
	// once when a third of the rekeys are answered. With untilWon, a rekey
	// answered 409 is sent again (after up to 10 ms) until it wins, as a
	// client that must rotate its CA would.
	runStorm := func(t *testing.T, n, clients int, untilWon bool, midway func()) (*storm, int) {
		t.Helper()
		st := &storm{answered: map[int]string{}}
		stop := make(chan struct{})
		var signers sync.WaitGroup
		for range 2 {
			signers.Go(func() { signer(t, servers, "storm", csr, stop, &signs, &signMu, &refused) })
		}
		var wg sync.WaitGroup
		var next, done atomic.Int64
		var once sync.Once
		var midwayDone atomic.Bool
		start := make(chan struct{})
		for range clients {
			wg.Go(func() {
				<-start
				for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
					after := midwayDone.Load()
					r, err := tryDo("POST", servers[i%2].URL+"/v1/clusters/storm/ca/rekey", memberToken, `{}`)
					st.record(r, err)
					for untilWon && err == nil && r.Status == 409 {
						time.Sleep(time.Duration(mrand.IntN(10_000)) * time.Microsecond)
						r, err = tryDo("POST", servers[i%2].URL+"/v1/clusters/storm/ca/rekey", memberToken, `{}`)
						st.record(r, err)
					}
					if after && i%2 == 0 && err == nil && r.Status == 200 {
						st.survived.Add(1)
					}
					if done.Add(1) == int64(n/3) && midway != nil {
						once.Do(func() { midway(); midwayDone.Store(true) })
					}
				}
			})
		}
		close(start)
		wg.Wait()
		close(stop)
		signers.Wait()
		if len(st.twice) > 0 || len(st.other) > 0 {
			t.Fatalf("generations answered twice %v; answers neither 200 nor 409: %v", st.twice, st.other)
		}
		var ca caResource
		do(t, "GET", a.URL+"/v1/clusters/storm/ca", memberToken, nil).json(t, &ca)
		return st, ca.Generation
	}

	var before int
	// Each of the 100 clients sends its rekey again after a 409 until it
	// wins: 100 generations, 2..101, each answered to exactly one client.
	t.Run("100 concurrent rekeys over both give sequential generations", func(t *testing.T) {
		start := time.Now()
		st, final := runStorm(t, 100, 100, true, nil)
		oks := int(st.ok.Load())
		t.Logf("%d rekeys answered 200, %d 409 on the way, in %v; generation %d; %d signs, %d refused",
			oks, st.conflict.Load(), time.Since(start).Round(time.Millisecond), final, len(signs), refused.Load())
		if st.lost.Load() != 0 || oks != 100 {
			t.Fatalf("%d rekeys won, %d got no answer; want all 100 won", oks, st.lost.Load())
		}
		if final != 1+oks {
			t.Fatalf("generation %d after %d successful rekeys: lost or phantom", final, oks)
		}
		cas := chain(t, db, "storm", final)
		for g := 2; g <= final; g++ {
			cert, ok := st.answered[g]
			if !ok {
				t.Fatalf("generation %d was never answered", g)
			}
			if !bytes.Equal(parseCert(t, cert).Raw, cas[g].Raw) {
				t.Fatalf("the answer for generation %d is not the stored certificate", g)
			}
		}
		if len(signs) == 0 {
			t.Fatal("no sign succeeded during the storm: the test proves nothing")
		}
		for _, s := range signs {
			signedBy(t, s, cas)
		}
		before = final
	})
	if t.Failed() {
		return
	}

	// 16 clients send the 100 rekeys: the storm lasts long enough for the
	// survivor to answer rekeys after the kill.
	t.Run("SIGKILL of one instance mid-storm: the other carries on", func(t *testing.T) {
		signs = nil
		st, final := runStorm(t, 100, 16, false, func() {
			_ = b.cmd.Process.Kill()
		})
		_ = b.cmd.Wait()
		oks, lost := int(st.ok.Load()), int(st.lost.Load())
		t.Logf("%d rekeys answered 200 (%d by the survivor after the kill), %d 409, %d unanswered (killed); generation %d → %d; %d signs",
			oks, st.survived.Load(), st.conflict.Load(), lost, before, final, len(signs))
		if lost == 0 {
			t.Fatal("no request was lost: the kill came too late to prove anything")
		}
		if st.survived.Load() == 0 {
			t.Fatal("the survivor answered no rekey after the kill")
		}
		// Every 200 is a committed generation; an unanswered request may
		// have committed one too, never more than one each.
		if final < before+oks || final > before+oks+lost {
			t.Fatalf("generation %d after %d successes and %d unanswered from %d: lost or phantom", final, oks, lost, before)
		}
		cas := chain(t, db, "storm", final)
		for g, cert := range st.answered {
			if g <= before || g > final || !bytes.Equal(parseCert(t, cert).Raw, cas[g].Raw) {
				t.Fatalf("generation %d answered, not the stored one in (%d, %d]", g, before, final)
			}
		}
		for _, s := range signs {
			signedBy(t, s, cas)
		}
		// The survivor works on: a compare-and-swap rekey and a sign.
		r := do(t, "POST", a.URL+"/v1/clusters/storm/ca/rekey", memberToken, map[string]any{"expected_generation": final})
		if r.Status != 200 {
			t.Fatalf("rekey on the survivor: %d %s", r.Status, r.Body)
		}
		c := sign(t, a, memberToken, "storm", map[string]any{"csr": csr, "profile": "client"})
		signedBy(t, c, chain(t, db, "storm", final+1))
	})
}

// TestPostgresOutageThroughHTTP stops PostgreSQL under a running localrun:
// requests answer 503 backend_unavailable and /readyz fails; once the
// server is back, the same process serves again without a restart.
func TestPostgresOutageThroughHTTP(t *testing.T) {
	pg := startPostgres(t)
	s := startServer(t, serverOpts{args: sharedConfig(t, pg)})
	ca := createCA(t, s, memberToken, "outage", nil)
	csr := newCSR(t, p256(t), "alice", nil)
	body := map[string]any{"csr": csr, "profile": "client"}
	sign(t, s, memberToken, "outage", body)

	pg.stop(t)
	requests := []struct{ method, path string }{
		{"POST", "/v1/clusters/outage/certificates"},
		{"GET", "/v1/clusters/outage/ca"},
		{"POST", "/v1/clusters/outage/ca/rekey"},
		{"PUT", "/v1/clusters/another/ca"},
	}
	for _, rq := range requests {
		var b any
		switch rq.method {
		case "POST":
			b = body
			if strings.HasSuffix(rq.path, "/rekey") {
				b = `{}`
			}
		}
		r := do(t, rq.method, s.URL+rq.path, memberToken, b)
		if r.Status != 503 || r.problemCode(t) != "backend_unavailable" {
			t.Errorf("%s %s with PostgreSQL stopped: %d %s, want 503 backend_unavailable", rq.method, rq.path, r.Status, r.Body)
		}
		if strings.Contains(string(r.Body), pg.dir) || strings.Contains(string(r.Body), "postgres://") {
			t.Errorf("%s %s: the answer shows the DSN: %s", rq.method, rq.path, r.Body)
		}
	}
	if r := do(t, "GET", s.URL+"/readyz", "", nil); r.Status != 503 {
		t.Errorf("/readyz with PostgreSQL stopped: %d %s", r.Status, r.Body)
	}
	if r := do(t, "GET", s.URL+"/healthz", "", nil); r.Status != 200 {
		t.Errorf("/healthz with PostgreSQL stopped: %d (the process itself is fine)", r.Status)
	}

	pg.start(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := do(t, "GET", s.URL+"/readyz", "", nil)
		if r.Status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d 30 s after PostgreSQL came back: %s", r.Status, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c := sign(t, s, memberToken, "outage", body)
	if err := verifies(t, c.Certificate, ca.TrustBundle, x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatal(err)
	}
	if r := do(t, "POST", s.URL+"/v1/clusters/outage/ca/rekey", memberToken, map[string]any{"expected_generation": 1}); r.Status != 200 {
		t.Fatalf("rekey after the outage: %d %s", r.Status, r.Body)
	}
	// Nothing the outage refused was half-written.
	db := pg.open(t)
	if _, err := db.Cluster(context.Background(), "another"); err == nil {
		t.Fatal("the CA refused during the outage exists")
	}
	chain(t, db, "outage", 2)
}

// TestExecBootstrapsOnPostgres runs the built Lambda bootstraps behind
// `localrun serve --exec` on one PostgreSQL database: a CA created through
// rekeycluster's bootstrap signs through signcsr's, and an ordinary
// instance on the same database sees what the bootstraps wrote.
func TestExecBootstrapsOnPostgres(t *testing.T) {
	pg := startPostgres(t)
	shared := sharedConfig(t, pg)
	lambda := startServer(t, serverOpts{args: append([]string{"--exec", "--bin-dir", filepath.Join(binDir, "lambda")}, shared...)})
	plain := startServer(t, serverOpts{args: shared})

	ca := createCA(t, lambda, memberToken, "lambda-pg", nil)
	c := sign(t, lambda, memberToken, "lambda-pg", map[string]any{"csr": newCSR(t, p256(t), "alice", nil), "profile": "client"})
	if err := verifies(t, c.Certificate, ca.TrustBundle, x509.ExtKeyUsageClientAuth); err != nil || c.CAGeneration != 1 {
		t.Fatalf("signed through the signcsr bootstrap: generation %d, %v", c.CAGeneration, err)
	}
	r := do(t, "POST", lambda.URL+"/v1/clusters/lambda-pg/ca/rekey", memberToken, map[string]any{"expected_generation": 1})
	if r.Status != 200 {
		t.Fatalf("rekey through the rekeycluster bootstrap: %d %s", r.Status, r.Body)
	}
	var rekeyed, seen caResource
	r.json(t, &rekeyed)
	do(t, "GET", plain.URL+"/v1/clusters/lambda-pg/ca", memberToken, nil).json(t, &seen)
	if seen.Generation != 2 || seen.Certificate != rekeyed.Certificate {
		t.Fatalf("the ordinary instance sees generation %d", seen.Generation)
	}
	c = sign(t, plain, memberToken, "lambda-pg", map[string]any{"csr": newCSR(t, p256(t), "alice", nil), "profile": "client"})
	if err := verifies(t, c.Certificate, rekeyed.TrustBundle, x509.ExtKeyUsageClientAuth); err != nil || c.CAGeneration != 2 {
		t.Fatalf("signed by the ordinary instance after the bootstrap's rekey: generation %d, %v", c.CAGeneration, err)
	}
}

// e2eStore is the PostgreSQL server every localrun of the package shares
// when CLUSTERKEYS_E2E_STORE=postgres, started on first use and stopped
// after the last test.
var e2eStore struct {
	once sync.Once
	pg   *pgServer
	err  string
	dbs  atomic.Int64
}

// e2eStoreArgs returns the extra flags of a localrun serve started on
// state. With CLUSTERKEYS_E2E_STORE=postgres, a fresh state dir gets a
// database of its own on the package's PostgreSQL server, named by
// state/store.dsn (0600) and passed with --store-file; a restart on the
// same state dir finds that file and uses the same database. Servers given
// a store by their test, servers on a state dir where another process
// already made a SQLite store, and every server without the variable keep
// their flags (SQLite in the state dir).
func e2eStoreArgs(t testing.TB, state string, args []string) []string {
	t.Helper()
	if os.Getenv("CLUSTERKEYS_E2E_STORE") != "postgres" || slices.Contains(args, "--store") || slices.Contains(args, "--store-file") {
		return nil
	}
	file := filepath.Join(state, "store.dsn")
	if _, err := os.Stat(file); err == nil {
		return []string{"--store-file", file}
	}
	if _, err := os.Stat(filepath.Join(state, "clusterkeys.db")); err == nil {
		return nil // another process (a KMS shim) made a SQLite store here to share
	}
	e2eStore.once.Do(func() {
		if bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres"); len(bins) == 0 {
			e2eStore.err = "CLUSTERKEYS_E2E_STORE=postgres, but PostgreSQL is missing: apt-get install postgresql (or make deps)"
			return
		}
		dir, err := os.MkdirTemp("", "ck-e2e-pg-shared-")
		if err == nil {
			err = os.Chmod(dir, 0o711)
		}
		if err != nil {
			e2eStore.err = err.Error()
			return
		}
		p := &pgServer{dir: dir}
		var stderr bytes.Buffer
		cmd := scriptCmd("postgres.sh", "start", dir)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			e2eStore.err = fmt.Sprintf("postgres.sh start: %v: %s", err, stderr.String())
			os.RemoveAll(dir)
			return
		}
		p.DSN = strings.TrimSpace(string(out))
		e2eStore.pg = p
		atExit = append(atExit, func() {
			_ = scriptCmd("postgres.sh", "stop", dir).Run()
			os.RemoveAll(dir)
		})
	})
	if e2eStore.pg == nil {
		need.Missing(t, e2eStore.err)
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, e2eStore.pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	name := fmt.Sprintf("ck_e2e_%d", e2eStore.dbs.Add(1))
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	dsn := strings.Replace(e2eStore.pg.DSN, "/clusterkeys?", "/"+name+"?", 1)
	if err := os.WriteFile(file, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("localrun on PostgreSQL database %s", name)
	return []string{"--store-file", file}
}

// stateStore is the store of a stopped server's state dir, opened by the
// test itself.
type stateStore interface {
	keys.Blobs
	KeyRefs(ctx context.Context) (store.KeyRefs, error)
	Close() error
}

// openStateStore opens the store of a localrun started on state: the
// PostgreSQL database its store.dsn names (CLUSTERKEYS_E2E_STORE=postgres),
// else the SQLite file in it.
func openStateStore(ctx context.Context, state string) (stateStore, error) {
	if b, err := os.ReadFile(filepath.Join(state, "store.dsn")); err == nil {
		return postgres.Open(ctx, strings.TrimSpace(string(b)))
	}
	return sqlite.Open(ctx, filepath.Join(state, "clusterkeys.db"))
}

// BenchmarkSignCSRThroughLocalrunOnPostgres is BenchmarkSignCSRThroughLocalrun
// on PostgreSQL: sign-CSR through one, then two `localrun serve` instances
// sharing one database (the 8 clients alternate between them), reporting
// req/s, p50 and p99. Compare with BenchmarkSignCSRThroughLocalrun (SQLite).
func BenchmarkSignCSRThroughLocalrunOnPostgres(b *testing.B) {
	pg := startPostgres(b)
	shared := sharedConfig(b, pg)
	a := startServer(b, serverOpts{args: shared})
	two := startServer(b, serverOpts{args: shared})
	if r := do(b, "PUT", a.URL+"/v1/clusters/load/ca", adminToken, map[string]any{"key_algorithm": "ecdsa-p256"}); r.Status != 201 {
		b.Fatalf("create CA: %d %s", r.Status, r.Body)
	}
	body, err := json.Marshal(map[string]any{"csr": newCSR(b, p256(b), "load-user", nil), "profile": "client"})
	if err != nil {
		b.Fatal(err)
	}
	for _, servers := range [][]*server{{a}, {a, two}} {
		b.Run(fmt.Sprintf("instances=%d", len(servers)), func(b *testing.B) {
			var urls []string
			for _, s := range servers {
				urls = append(urls, s.URL+"/v1/clusters/load/certificates")
			}
			if got := loadRunOver(b, urls, body); got[http.StatusCreated] != b.N {
				b.Fatalf("answers %v, want %d × 201", got, b.N)
			}
		})
	}
}

// BenchmarkRekeyContentionOnPostgres measures rekeys of one cluster from 8
// clients alternating between two instances on one database: every rekey
// races the others, one wins each generation and the rest answer 409.
// It reports the latency of all answers (p50, p99), req/s and the share
// that won.
func BenchmarkRekeyContentionOnPostgres(b *testing.B) {
	pg := startPostgres(b)
	shared := sharedConfig(b, pg)
	a := startServer(b, serverOpts{args: shared})
	two := startServer(b, serverOpts{args: shared})
	if r := do(b, "PUT", a.URL+"/v1/clusters/contended/ca", adminToken, nil); r.Status != 201 {
		b.Fatalf("create CA: %d %s", r.Status, r.Body)
	}
	urls := []string{a.URL + "/v1/clusters/contended/ca/rekey", two.URL + "/v1/clusters/contended/ca/rekey"}
	got := loadRunOver(b, urls, []byte(`{}`))
	if got[http.StatusOK]+got[http.StatusConflict] != b.N || got[http.StatusOK] == 0 {
		b.Fatalf("answers %v, want only 200 and 409", got)
	}
	b.ReportMetric(float64(got[http.StatusOK])/float64(b.N), "won/op")
}

// loadRunOver sends b.N POSTs of body from 8 concurrent clients, client c
// to urls[c % len(urls)], reports throughput and latency percentiles, and
// returns how many answers had each status (-1: no answer).
func loadRunOver(b *testing.B, urls []string, body []byte) map[int]int {
	const clients = 8
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	statuses := make([]map[int]int, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		statuses[c] = map[int]int{}
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				req, _ := http.NewRequest("POST", urls[c%len(urls)], bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+adminToken)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					statuses[c][-1]++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses[c][resp.StatusCode]++
				lat[c] = append(lat[c], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	got := map[int]int{}
	for _, m := range statuses {
		for k, v := range m {
			got[k] += v
		}
	}
	if len(all) == 0 {
		return got
	}
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	return got
}
