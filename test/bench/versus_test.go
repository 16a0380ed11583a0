package bench

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchToken is the admin token of the localrun the bench starts.
const benchToken = "bench-admin-token-0123456789abcdef"

// settings of one run, from the environment.
type settings struct {
	rounds     int
	round      time.Duration
	clients    []int
	profileDir string
	// profileOp is the load profiled: "sign", "validate" (one bundle
	// again and again) or "validate-fresh" (the "new leaves" pair's
	// bodies, going on from where its rounds left off).
	profileOp string
	// profileClients is how many clients the profiled load has
	// (CLUSTERKEYS_PEER_PROFILE_CLIENTS, default 8).
	profileClients int
	ops            map[string]bool // the pairs run ("sign", "validate"); nil means both
	// freshLeaves is how many new leaves the "new leaves" validate pair
	// has (CLUSTERKEYS_PEER_FRESH_LEAVES).
	freshLeaves int
}

func readSettings(t *testing.T) settings {
	t.Helper()
	s := settings{rounds: 3, round: 3 * time.Second, clients: []int{1, 8, 32}, profileDir: os.Getenv("CLUSTERKEYS_PEER_PROFILE_DIR")}
	if v := os.Getenv("CLUSTERKEYS_PEER_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			t.Fatalf("CLUSTERKEYS_PEER_ROUNDS=%q: want 1..100", v)
		}
		s.rounds = n
	}
	if v := os.Getenv("CLUSTERKEYS_PEER_ROUND_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 600 {
			t.Fatalf("CLUSTERKEYS_PEER_ROUND_SECONDS=%q: want 1..600", v)
		}
		s.round = time.Duration(n) * time.Second
	}
	s.profileClients = 8
	if v := os.Getenv("CLUSTERKEYS_PEER_PROFILE_CLIENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 256 {
			t.Fatalf("CLUSTERKEYS_PEER_PROFILE_CLIENTS=%q: want 1..256", v)
		}
		s.profileClients = n
	}
	s.freshLeaves = 90000
	if v := os.Getenv("CLUSTERKEYS_PEER_FRESH_LEAVES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1_000_000 {
			t.Fatalf("CLUSTERKEYS_PEER_FRESH_LEAVES=%q: want 1..1000000", v)
		}
		s.freshLeaves = n
	}
	s.profileOp = os.Getenv("CLUSTERKEYS_PEER_PROFILE_OP")
	switch s.profileOp {
	case "":
		s.profileOp = "sign"
	case "sign", "validate", "validate-fresh":
	default:
		t.Fatalf("CLUSTERKEYS_PEER_PROFILE_OP=%q: want sign, validate or validate-fresh", s.profileOp)
	}
	if v := os.Getenv("CLUSTERKEYS_PEER_OPS"); v != "" {
		s.ops = map[string]bool{}
		for f := range strings.SplitSeq(v, ",") {
			f = strings.TrimSpace(f)
			if f != "sign" && f != "validate" {
				t.Fatalf("CLUSTERKEYS_PEER_OPS=%q: want a list of sign, validate", v)
			}
			s.ops[f] = true
		}
	}
	if v := os.Getenv("CLUSTERKEYS_PEER_CLIENTS"); v != "" {
		s.clients = nil
		for f := range strings.SplitSeq(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 256 {
				t.Fatalf("CLUSTERKEYS_PEER_CLIENTS=%q: want a list of 1..256", v)
			}
			s.clients = append(s.clients, n)
		}
	}
	return s
}

// TestVersusCfssl is the side-by-side run of issue 13: sign-CSR and
// validate-TLS-bundle through `localrun serve` against cfssl serve's sign
// and bundle APIs.
func TestVersusCfssl(t *testing.T) {
	set := readSettings(t)
	bin := os.Getenv("CLUSTERKEYS_BIN")
	if bin == "" {
		t.Fatal("CLUSTERKEYS_BIN must name the directory holding the built localrun (make build)")
	}
	cfsslBin := buildCfssl(t)
	dir := t.TempDir()
	fx := newFixtures(t, dir)
	load := loadAverage()

	ck := startLocalrun(t, filepath.Join(bin, "localrun"), set.profileDir != "")
	cf := startCfssl(t, cfsslBin, dir)
	cfdb, cfdbPath := startCfsslRecording(t, cfsslBin, dir)

	if r := post(t, ck.url+"/v1/clusters/bench/ca", `{"key_algorithm":"ecdsa-p256"}`, "PUT", benchToken); r != http.StatusCreated {
		t.Fatalf("create the clusterkeys CA: status %d", r)
	}

	ckSign := target{name: "clusterkeys sign-CSR", srv: ck, url: ck.url + "/v1/clusters/bench/certificates", token: benchToken, want: http.StatusCreated}
	cfSign := target{name: "cfssl sign", srv: cf, url: cf.url + "/api/v1/cfssl/sign", want: http.StatusOK}
	for _, csr := range fx.csrs {
		ckSign.bodies = append(ckSign.bodies, mustJSON(t, map[string]string{"csr": csr, "profile": "client"}))
		cfSign.bodies = append(cfSign.bodies, mustJSON(t, map[string]string{"certificate_request": csr}))
	}
	cfSignDB := cfSign
	cfSignDB.name, cfSignDB.srv, cfSignDB.url = "cfssl sign, recording", cfdb, cfdb.url+"/api/v1/cfssl/sign"

	ckValidate := target{name: "clusterkeys validate", srv: ck, url: ck.url + "/v1/tls/validate", token: benchToken, want: http.StatusOK,
		bodies: [][]byte{mustJSON(t, map[string]string{"certificate": fx.leaf, "private_key": fx.leafKey, "intermediates": fx.inter, "ca_bundle": fx.root})}}
	cfBundle := target{name: "cfssl bundle", srv: cf, url: cf.url + "/api/v1/cfssl/bundle", want: http.StatusOK,
		bodies: [][]byte{mustJSON(t, map[string]string{"certificate": fx.leaf + fx.inter, "private_key": fx.leafKey})}}
	// The same, with a leaf (and key) never sent before in each request,
	// as long as the pool lasts: clusterkeys remembers the certificates
	// and the path validations it has seen, which the pair above, one
	// bundle again and again, measures; this one measures the bundles it
	// has not seen. Both sides get the same bodies in the same order.
	ckValidateFresh := target{name: "clusterkeys validate, new leaves", srv: ck, url: ckValidate.url, token: benchToken, want: http.StatusOK, cursor: new(atomic.Int64)}
	cfBundleFresh := target{name: "cfssl bundle, new leaves", srv: cf, url: cfBundle.url, want: http.StatusOK, cursor: new(atomic.Int64)}
	if set.ops == nil || set.ops["validate"] {
		leaves, keys := fx.freshLeaves(t, set.freshLeaves)
		for i := range leaves {
			ckValidateFresh.bodies = append(ckValidateFresh.bodies, mustJSON(t, map[string]string{
				"certificate": leaves[i], "private_key": keys[i], "intermediates": fx.inter, "ca_bundle": fx.root}))
			cfBundleFresh.bodies = append(cfBundleFresh.bodies, mustJSON(t, map[string]string{
				"certificate": leaves[i] + fx.inter, "private_key": keys[i]}))
		}
	}

	// One request of each, checked, before any timing.
	for _, tg := range []target{ckSign, cfSign, cfSignDB, ckValidate, cfBundle} {
		if st, body := tg.once(); st != tg.want {
			t.Fatalf("%s: status %d, want %d: %s", tg.name, st, tg.want, body)
		}
	}
	if n := countRows(t, cfdbPath); n != 1 {
		t.Fatalf("cfssl with its certdb recorded %d certificates for one sign, want 1", n)
	}
	cfdbOK := 1

	floor := newSignFloor(t, dir, fx.csrs)
	if err := floor.sign(); err != nil {
		t.Fatalf("in-process floor: %v", err)
	}

	var pairs []pairResult
	var floors []floorResult
	for _, p := range []struct {
		key, op string
		ck, cf  target
	}{{"sign", "sign-CSR", ckSign, cfSign}, {"sign", signRecording, ckSign, cfSignDB}, {"validate", "validate bundle", ckValidate, cfBundle}, {"validate", validateFresh, ckValidateFresh, cfBundleFresh}} {
		if set.ops != nil && !set.ops[p.key] {
			continue
		}
		for _, c := range set.clients {
			pr := pairResult{op: p.op, clients: c}
			for round := range set.rounds {
				// Alternate who goes first, so that neither always meets
				// the machine right after the other's load.
				if round%2 == 0 {
					pr.ck.add(run(p.ck, c, set.round))
					pr.cf.add(run(p.cf, c, set.round))
				} else {
					pr.cf.add(run(p.cf, c, set.round))
					pr.ck.add(run(p.ck, c, set.round))
				}
			}
			t.Logf("%-16s %2d clients: clusterkeys %s | cfssl %s | ratio %.2f",
				p.op, c, pr.ck.summary(), pr.cf.summary(), pr.ratio())
			pairs = append(pairs, pr)
			if p.op == signRecording {
				cfdbOK += pr.cf.ok
			}
			if p.op == "sign-CSR" {
				// The in-process floor after the pair's rounds, as many
				// rounds as long.
				fr := floorResult{clients: c, ck: pr.ck}
				for range set.rounds {
					fr.floor.add(floor.measure(c, set.round))
				}
				t.Logf("%-16s %2d clients: in-process floor %s | clusterkeys / floor %.2f", p.op, c, fr.floor.summary(), fr.ratio())
				floors = append(floors, fr)
			}
		}
	}
	if set.profileDir != "" {
		switch set.profileOp {
		case "validate":
			profile(t, ck, ckValidate, set.profileClients, set.profileDir)
		case "validate-fresh":
			if len(ckValidateFresh.bodies) == 0 {
				t.Fatal("CLUSTERKEYS_PEER_PROFILE_OP=validate-fresh needs the validate pairs (CLUSTERKEYS_PEER_OPS)")
			}
			profile(t, ck, ckValidateFresh, set.profileClients, set.profileDir)
		default:
			profile(t, ck, ckSign, set.profileClients, set.profileDir)
		}
	}
	// cfssl answers a sign whose record failed with an error: every
	// answered sign must be in its certdb.
	if n := countRows(t, cfdbPath); n != cfdbOK {
		t.Errorf("cfssl's certdb holds %d certificates after %d answered signs", n, cfdbOK)
	}
	if n := ckValidateFresh.cursor.Load(); n > int64(len(ckValidateFresh.bodies)) {
		t.Logf("%s: %d requests for %d new leaves: %d sent a leaf again (raise CLUSTERKEYS_PEER_FRESH_LEAVES)",
			validateFresh, n, len(ckValidateFresh.bodies), n-int64(len(ckValidateFresh.bodies)))
	}
	addSection("cfssl", markdown(pairs, floors, set, load))
	for _, pr := range pairs {
		if pr.ck.errors > 0 || pr.cf.errors > 0 {
			t.Errorf("%s at %d clients: %d clusterkeys and %d cfssl requests failed", pr.op, pr.clients, pr.ck.errors, pr.cf.errors)
		}
	}
}

// buildCfssl runs cfssl.sh (which builds cfssl once into the tool cache and
// prints its directory) and returns the path of the binary.
func buildCfssl(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("bash", "cfssl.sh")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("build cfssl (test/bench/cfssl.sh): %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "cfssl")
}

// target is one endpoint under load.
type target struct {
	name   string
	srv    *server // whose CPU time a round measures
	url    string
	token  string
	want   int
	bodies [][]byte // cycled through, one per request
	// cursor, when set, is where the cycle through bodies goes on from
	// one round to the next (each body sent once until they run out);
	// otherwise every round starts again at the first.
	cursor *atomic.Int64
}

func (tg target) request(hc *http.Client, body []byte) (int, []byte, error) {
	return tg.requestMethod(hc, "POST", body)
}

func (tg target) requestMethod(hc *http.Client, method string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, tg.url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if tg.token != "" {
		req.Header.Set("Authorization", "Bearer "+tg.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (tg target) once() (int, string) {
	st, b, err := tg.request(&http.Client{Timeout: 30 * time.Second}, tg.bodies[0])
	if err != nil {
		return 0, err.Error()
	}
	return st, string(b)
}

// sample is what one or more rounds measured.
type sample struct {
	ok, errors int
	elapsed    time.Duration
	cpu        time.Duration // the server process's CPU time
	lat        []time.Duration
}

func (s *sample) add(o sample) {
	s.ok += o.ok
	s.errors += o.errors
	s.elapsed += o.elapsed
	s.cpu += o.cpu
	s.lat = append(s.lat, o.lat...)
}

func (s sample) rate() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.ok) / s.elapsed.Seconds()
}

func (s sample) pct(p float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	l := slices.Clone(s.lat)
	slices.Sort(l)
	return l[int(p*float64(len(l)-1))]
}

// cpuPerRequest is the server's CPU time per answered request, which the
// load of other processes on the machine disturbs less than req/s.
func (s sample) cpuPerRequest() time.Duration {
	if s.ok == 0 {
		return 0
	}
	return s.cpu / time.Duration(s.ok)
}

func (s sample) summary() string {
	return fmt.Sprintf("%7.0f req/s p50 %s p99 %s, CPU %s/req (%d errors)", s.rate(), ms(s.pct(.5)), ms(s.pct(.99)), ms(s.cpuPerRequest()), s.errors)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// run drives tg with a closed loop of clients for d: each client sends its
// next request when the previous answer has been read.
func run(tg target, clients int, d time.Duration) sample {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	next := tg.cursor
	if next == nil {
		next = new(atomic.Int64)
	}
	return closedLoop(tg.srv, clients, d, func() error {
		body := tg.bodies[int(next.Add(1))%len(tg.bodies)]
		st, _, err := tg.request(hc, body)
		if err == nil && st != tg.want {
			err = fmt.Errorf("status %d, want %d", st, tg.want)
		}
		return err
	})
}

// closedLoop runs call from each of clients goroutines for d, each calling
// again once its previous call has returned, and measures the calls and
// srv's CPU time (srv may be nil).
func closedLoop(srv *server, clients int, d time.Duration, call func() error) sample {
	results := make([]sample, clients)
	var wg sync.WaitGroup
	var cpu0 time.Duration
	if srv != nil {
		cpu0 = srv.cpuTime()
	}
	start := time.Now()
	deadline := start.Add(d)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[c]
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := call(); err != nil {
					r.errors++
					continue
				}
				r.ok++
				r.lat = append(r.lat, time.Since(t0))
			}
		}()
	}
	wg.Wait()
	var s sample
	for _, r := range results {
		s.add(r)
	}
	s.elapsed = time.Since(start)
	if srv != nil {
		s.cpu = srv.cpuTime() - cpu0
	}
	return s
}

// pairResult is one operation at one client count, both servers.
type pairResult struct {
	op      string
	clients int
	ck, cf  sample
}

func (p pairResult) ratio() float64 {
	if p.cf.rate() == 0 {
		return 0
	}
	return p.ck.rate() / p.cf.rate()
}

// writePairRows writes a table row a pair: operation, clients, then each
// side's rate, p50, p99 and CPU per request (durations written by unit),
// the ratio of the rates, and one cell a function of extra.
func writePairRows(b *strings.Builder, pairs []pairResult, unit func(time.Duration) string, extra ...func(pairResult) string) {
	side := func(s sample) string {
		return fmt.Sprintf("%.0f | %s | %s | %s", s.rate(), unit(s.pct(.5)), unit(s.pct(.99)), unit(s.cpuPerRequest()))
	}
	for _, p := range pairs {
		fmt.Fprintf(b, "| %s | %d | %s | %s | %.2f × |", p.op, p.clients, side(p.ck), side(p.cf), p.ratio())
		for _, cell := range extra {
			fmt.Fprintf(b, " %s |", cell(p))
		}
		b.WriteString("\n")
	}
}

// validateFresh is the operation of the validate pair whose every request
// carries a leaf never sent before (fixtures.freshLeaves).
const validateFresh = "validate bundle, new leaves"

// signRecording is the operation of the pair whose cfssl records its
// certificates (certdb on SQLite).
const signRecording = "sign-CSR, cfssl recording"

// floorResult is sign-CSR through localrun beside its in-process floor
// (signFloor) at one client count.
type floorResult struct {
	clients   int
	ck, floor sample
}

func (f floorResult) ratio() float64 {
	if f.floor.rate() == 0 {
		return 0
	}
	return f.ck.rate() / f.floor.rate()
}

func markdown(pairs []pairResult, floors []floorResult, set settings, load string) string {
	var b strings.Builder
	b.WriteString("## sign and validate, beside cfssl\n\n")
	b.WriteString("Both servers run on loopback on the\n")
	b.WriteString("same machine, driven by the same closed-loop load generator with the same P-256 CSRs (CA keys\n")
	b.WriteString("P-256 on both sides) and the same chain (root, intermediate, P-256 leaf and key), in rounds that\n")
	b.WriteString("alternate between the two servers. clusterkeys is `localrun serve` with its defaults (software\n")
	b.WriteString("custody, SQLite, token-file auth, info logs) except `--max-in-flight-validate 0` (cfssl has no such limit);\n")
	b.WriteString("cfssl is `cfssl serve` v1.6.5 with its defaults. Every clusterkeys certificate is recorded in the\n")
	b.WriteString("registry before the answer; cfssl records nothing (no database configured), except in the rows\n")
	b.WriteString("\"sign-CSR, cfssl recording\", where a second `cfssl serve` has `-db-config` naming its certdb on\n")
	b.WriteString("SQLite (cfssl's own schema and sqlite3 driver, its defaults), so both sides record every certificate.\n\n")
	b.WriteString(machineLines(load))
	fmt.Fprintf(&b, "- rounds: %d × %s per server, operation and client count\n\n", set.rounds, set.round)
	b.WriteString("| operation | clients | clusterkeys req/s | p50 | p99 | CPU/req | cfssl req/s | p50 | p99 | CPU/req | ratio (req/s) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	writePairRows(&b, pairs, ms)
	b.WriteString("\nclusterkeys sign-CSR is `POST /v1/clusters/{c}/certificates` (profile client); cfssl sign is\n")
	b.WriteString("`POST /api/v1/cfssl/sign`. clusterkeys validate is `POST /v1/tls/validate` with leaf, key,\n")
	b.WriteString("intermediate and `ca_bundle`; cfssl bundle is `POST /api/v1/cfssl/bundle` with leaf + intermediate\n")
	b.WriteString("and key, the root in its `-ca-bundle`. \"validate bundle\" sends one bundle again and again: clusterkeys\n")
	b.WriteString("remembers the certificates it parsed and the path validations that succeeded (pkg/tlsbundle's caches),\n")
	b.WriteString("so this row measures a bundle it has seen; \"validate bundle, new leaves\" sends, on both sides, a leaf\n")
	b.WriteString("and key never sent before in each request (same intermediate and root), so its leaf's signature is\n")
	b.WriteString("always checked. CPU/req is the server process's user + system CPU time\n")
	b.WriteString("(from /proc) per answered request: the machine's other load disturbs it less than req/s.\n")
	if len(floors) > 0 {
		b.WriteString("\nsign-CSR beside its in-process floor: the same CSRs, in the bench process, by as many\n")
		b.WriteString("goroutines as clients, each doing only what any CA that records its certificates must do:\n")
		b.WriteString("PEM decode, parse, verify the CSR's signature, `x509.CreateCertificate` (P-256; it verifies the\n")
		b.WriteString("signature it made) and `RecordCertificate` in a SQLite registry (group commit, synchronous FULL).\n")
		b.WriteString("No HTTP, JSON, authentication, policy or logs; no load generator shares the machine with it.\n\n")
		b.WriteString("| clients | clusterkeys req/s | CPU/req | floor req/s | CPU/op | clusterkeys / floor |\n")
		b.WriteString("|---:|---:|---:|---:|---:|---:|\n")
		for _, f := range floors {
			fmt.Fprintf(&b, "| %d | %.0f | %s | %.0f | %s | %.2f × |\n", f.clients, f.ck.rate(), ms(f.ck.cpuPerRequest()),
				f.floor.rate(), ms(f.floor.cpuPerRequest()), f.ratio())
		}
	}
	return b.String()
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t *testing.T, url, body, method, token string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// fixtures are the PEM inputs both servers get.
// freshLeaves returns n P-256 leaves (PEM) and their keys (PEM), each
// issued by the fixtures' intermediate: bundles no server has seen yet.
func (fx fixtures) freshLeaves(t *testing.T, n int) (leaves, keys []string) {
	t.Helper()
	leaves, keys = make([]string, n), make([]string, n)
	now := time.Now().Add(-time.Hour)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := range 2 {
		wg.Go(func() {
			for i := w; i < n; i += 2 {
				k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					errs <- err
					return
				}
				der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
					SerialNumber: big.NewInt(int64(1000 + i)), Subject: pkix.Name{CommonName: fmt.Sprintf("www%d.bench.test", i)},
					DNSNames:  []string{fmt.Sprintf("www%d.bench.test", i)},
					NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour),
					KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				}, fx.interCert, &k.PublicKey, fx.interKey)
				if err != nil {
					errs <- err
					return
				}
				kd, err := x509.MarshalECPrivateKey(k)
				if err != nil {
					errs <- err
					return
				}
				leaves[i], keys[i] = pemOf("CERTIFICATE", der), pemOf("EC PRIVATE KEY", kd)
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("fresh leaves: %v", err)
	}
	return leaves, keys
}

type fixtures struct {
	interCert                  *x509.Certificate
	interKey                   *ecdsa.PrivateKey
	csrs                       []string
	root, inter, leaf, leafKey string
	caCertFile, caKeyFile      string
	rootFile, interFile        string
}

func newFixtures(t *testing.T, dir string) fixtures {
	t.Helper()
	var fx fixtures
	for i := range 64 {
		k := p256(t)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: fmt.Sprintf("bench-user-%d", i), Organization: []string{"bench"}},
		}, k)
		if err != nil {
			t.Fatal(err)
		}
		fx.csrs = append(fx.csrs, pemOf("CERTIFICATE REQUEST", der))
	}
	now := time.Now().Add(-time.Hour).UTC()
	// The CA cfssl signs with (clusterkeys makes its own, also P-256).
	caKey := p256(t)
	caCert := selfSigned(t, caKey, "bench cfssl CA", now)
	fx.caCertFile = writePEM(t, dir, "ca.pem", caCert)
	fx.caKeyFile = writePEM(t, dir, "ca-key.pem", ecKeyPEM(t, caKey))
	// The chain both validate.
	rootKey := p256(t)
	rootDER := selfSigned(t, rootKey, "bench root", now)
	root, _ := x509.ParseCertificate(rootDER)
	interKey := p256(t)
	interDER := issue(t, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "bench intermediate"},
		NotBefore: now, NotAfter: now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}, root, &interKey.PublicKey, rootKey)
	inter, _ := x509.ParseCertificate(interDER)
	fx.interCert, fx.interKey = inter, interKey
	leafKey := p256(t)
	leafDER := issue(t, &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "www.bench.test"},
		DNSNames:  []string{"www.bench.test"},
		NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, inter, &leafKey.PublicKey, interKey)
	fx.root, fx.inter, fx.leaf = pemOf("CERTIFICATE", rootDER), pemOf("CERTIFICATE", interDER), pemOf("CERTIFICATE", leafDER)
	fx.leafKey = ecKeyPEM(t, leafKey)
	fx.rootFile = writePEM(t, dir, "root.pem", rootDER)
	fx.interFile = writePEM(t, dir, "inter.pem", interDER)
	return fx
}

func p256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func selfSigned(t *testing.T, k *ecdsa.PrivateKey, cn string, now time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: now, NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	return issue(t, tmpl, tmpl, &k.PublicKey, k)
}

func issue(t *testing.T, tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func ecKeyPEM(t *testing.T, k *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("EC PRIVATE KEY", der)
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

// writePEM writes a PEM file (mode 0600) into dir; data is DER of a
// certificate or an already encoded PEM string.
func writePEM(t *testing.T, dir, name string, data any) string {
	t.Helper()
	var b []byte
	switch v := data.(type) {
	case []byte:
		b = []byte(pemOf("CERTIFICATE", v))
	case string:
		b = []byte(v)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func jsonBytes(v any) ([]byte, error) { return json.Marshal(v) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
