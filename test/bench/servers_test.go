package bench

import (
	"bytes"
	"database/sql"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/testproc"

	_ "modernc.org/sqlite" // cfssl's certdb schema
)

// server is a started server process.
type server struct {
	url   string
	dir   string // localrun's state directory, or ""
	pprof string // localrun's pprof base URL, or ""
	logs  *testproc.Output
	pid   int
}

// cpuTime returns the CPU time (user + system) the server process has used,
// from /proc/PID/stat, or 0 when it cannot be read.
func (s *server) cpuTime() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields after its ')'
	// start at field 3, so utime (14) and stime (15) are at 11 and 12.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	// Linux reports clock ticks of USER_HZ, 100 on every architecture Go
	// runs on.
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// startLocalrun starts `localrun serve` on a free loopback port with a
// fresh state directory (software custody, SQLite unless extra flags name
// another store) and one admin token.
func startLocalrun(t *testing.T, bin string, withPprof bool, extra ...string) *server {
	t.Helper()
	state := t.TempDir()
	if err := os.WriteFile(filepath.Join(state, "tokens.csv"), []byte(benchToken+",bench,ops,\"admin\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testproc.FreeAddr(t)
	args := append([]string{"serve", "--listen", addr, "--state-dir", state, "--max-in-flight-validate", "0"}, extra...)
	s := &server{url: "http://" + addr, dir: state}
	if withPprof {
		p := testproc.FreeAddr(t)
		args = append(args, "--pprof-listen", p)
		s.pprof = "http://" + p
	}
	start(t, s, exec.Command(bin, args...), state, s.httpReady("/readyz"))
	return s
}

// startCfssl starts `cfssl serve` on a free loopback port, signing with the
// P-256 CA of dir and bundling against its root and intermediate.
func startCfssl(t *testing.T, bin, dir string) *server {
	t.Helper()
	addr := testproc.FreeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "serve", "-address", host, "-port", port,
		"-ca", filepath.Join(dir, "ca.pem"), "-ca-key", filepath.Join(dir, "ca-key.pem"),
		"-ca-bundle", filepath.Join(dir, "root.pem"), "-int-bundle", filepath.Join(dir, "inter.pem"))
	s := &server{url: "http://" + addr}
	start(t, s, cmd, dir, s.httpReady("/api/v1/cfssl/health"))
	return s
}

// startCfsslRecording starts cfssl serve like startCfssl, with its
// certificate database (certdb) on SQLite in dir: cfssl then records every
// certificate it signs, as clusterkeys does. The schema is cfssl v1.6.5's
// (certdb/sqlite/migrations 001 and 002), created here with the SQLite
// driver the bench already links.
func startCfsslRecording(t *testing.T, bin, dir string) (*server, string) {
	t.Helper()
	dbPath := filepath.Join(dir, "cfssl-certdb.sqlite")
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, stmt := range []string{
		`CREATE TABLE certificates (
			serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, ca_label blob,
			status blob NOT NULL, reason int, expiry timestamp, revoked_at timestamp, pem blob NOT NULL,
			PRIMARY KEY(serial_number, authority_key_identifier))`,
		`CREATE TABLE ocsp_responses (
			serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, body blob NOT NULL, expiry timestamp,
			PRIMARY KEY(serial_number, authority_key_identifier),
			FOREIGN KEY(serial_number, authority_key_identifier) REFERENCES certificates(serial_number, authority_key_identifier))`,
		`ALTER TABLE certificates ADD COLUMN "issued_at" timestamp`,
		`ALTER TABLE certificates ADD COLUMN "not_before" timestamp`,
		`ALTER TABLE certificates ADD COLUMN "metadata" text`,
		`ALTER TABLE certificates ADD COLUMN "sans" text`,
		`ALTER TABLE certificates ADD COLUMN "common_name" text`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("cfssl certdb schema: %v", err)
		}
	}
	conf := filepath.Join(dir, "cfssl-db-config.json")
	if err := os.WriteFile(conf, fmt.Appendf(nil, `{"driver":"sqlite3","data_source":%q}`, dbPath), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testproc.FreeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "serve", "-address", host, "-port", port,
		"-ca", filepath.Join(dir, "ca.pem"), "-ca-key", filepath.Join(dir, "ca-key.pem"), "-db-config", conf)
	s := &server{url: "http://" + addr}
	start(t, s, cmd, dir, s.httpReady("/api/v1/cfssl/health"))
	return s, dbPath
}

// countRows returns the number of certificates in cfssl's certdb at path.
func countRows(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM certificates").Scan(&n); err != nil {
		t.Fatalf("count cfssl's certificates: %v", err)
	}
	return n
}

// httpReady returns a readiness check: GET probe on s answers 200.
func (s *server) httpReady(probe string) func() error {
	return func() error {
		resp, err := http.Get(s.url + probe)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: status %d", probe, resp.StatusCode)
		}
		return nil
	}
}

// socketReady returns a readiness check: path is a unix socket.
func socketReady(path string) func() error {
	return func() error {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if fi.Mode().Type() != fs.ModeSocket {
			return fmt.Errorf("%s is not a socket", path)
		}
		return nil
	}
}

// start runs cmd with its output in s.logs, stops it at the end of the
// test, and waits until ready returns nil.
func start(t *testing.T, s *server, cmd *exec.Cmd, dir string, ready func() error) {
	t.Helper()
	s.logs = &testproc.Output{Limit: 1 << 20}
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	exited := testproc.Start(t, filepath.Base(cmd.Path), cmd, 10*time.Second, s.logs)
	s.pid = cmd.Process.Pid
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := ready()
		if err == nil {
			return
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before it was ready: %v\n%s", cmd.Path, err, s.logs.Tail(4096))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready in 60 s: %v\n%s", cmd.Path, err, s.logs.Tail(4096))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// profile writes CPU and allocation profiles of localrun taken under the
// load of tg by clients clients into dir: cpu.pprof and allocs.pprof.
func profile(t *testing.T, s *server, tg target, clients int, dir string) {
	t.Helper()
	if s.pprof == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const seconds = 10
	for _, p := range []struct{ name, path string }{
		{"cpu.pprof", fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds)},
		{"allocs.pprof", fmt.Sprintf("/debug/pprof/allocs?seconds=%d", seconds)},
	} {
		var wg sync.WaitGroup
		wg.Add(1)
		var got sample
		go func() { defer wg.Done(); got = run(tg, clients, (seconds+2)*time.Second) }()
		time.Sleep(time.Second)
		resp, err := (&http.Client{Timeout: (seconds + 30) * time.Second}).Get(s.pprof + p.path)
		if err != nil {
			t.Fatalf("profile %s: %v", p.name, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		wg.Wait()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("profile %s: status %d, %v", p.name, resp.StatusCode, err)
		}
		if err := os.WriteFile(filepath.Join(dir, p.name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("profile %s under %d-client %s load (%s) written to %s", p.name, clients, tg.name, got.summary(), dir)
	}
}
