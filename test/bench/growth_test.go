package bench

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// growthSettings are the registry sizes and retired generations of
// TestRegistryGrowth (CLUSTERKEYS_GROWTH_SIZES, CLUSTERKEYS_GROWTH_GENERATIONS).
func growthSettings(t *testing.T) (sizes []int, generations int) {
	t.Helper()
	sizes, generations = []int{10_000, 100_000, 1_000_000}, 1000
	if v := os.Getenv("CLUSTERKEYS_GROWTH_SIZES"); v != "" {
		sizes = nil
		for f := range strings.SplitSeq(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 10_000_000 {
				t.Fatalf("CLUSTERKEYS_GROWTH_SIZES=%q: want a list of 1..10000000", v)
			}
			sizes = append(sizes, n)
		}
	}
	if v := os.Getenv("CLUSTERKEYS_GROWTH_GENERATIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100_000 {
			t.Fatalf("CLUSTERKEYS_GROWTH_GENERATIONS=%q: want 1..100000", v)
		}
		generations = n
	}
	return sizes, generations
}

// growthStore reports whether TestRegistryGrowth measures store (sqlite,
// postgres): every store unless CLUSTERKEYS_GROWTH_STORES lists some.
func growthStore(store string) bool {
	v := os.Getenv("CLUSTERKEYS_GROWTH_STORES")
	if v == "" {
		return true
	}
	for f := range strings.SplitSeq(v, ",") {
		if strings.TrimSpace(f) == store {
			return true
		}
	}
	return false
}

// pageBaseline is the size of the cluster whose audit pages the others
// are compared with: every filter fills its first page of 100.
const pageBaseline = 300

// growthRow is one measured registry.
type growthRow struct {
	name                                    string
	rows, generations                       int
	sign, page, valid, expired, generation1 time.Duration
}

// TestRegistryGrowth is the cost-as-the-work-grows comparison of issue 13:
// sign p50 and audit-page p50 (first page; status=valid; status=expired)
// through localrun on SQLite, on a cluster whose registry holds 10k, 100k
// and 1M bulk-loaded certificates and on one with 1,000 retired
// generations, beside an empty cluster in the same run.
func TestRegistryGrowth(t *testing.T) {
	bin := os.Getenv("CLUSTERKEYS_BIN")
	if bin == "" {
		t.Fatal("CLUSTERKEYS_BIN must name the directory holding the built localrun (make build)")
	}
	sizes, generations := growthSettings(t)
	load := loadAverage()
	fx := newFixtures(t, t.TempDir())
	var md strings.Builder
	t.Run("SQLite", func(t *testing.T) {
		if !growthStore("sqlite") {
			t.Skip("CLUSTERKEYS_GROWTH_STORES leaves SQLite out")
		}
		ck := startLocalrun(t, filepath.Join(bin, "localrun"), false)
		db, err := sql.Open("sqlite", filepath.Join(ck.dir, "clusterkeys.db")+"?_pragma=busy_timeout(30000)&_pragma=synchronous(OFF)&_pragma=cache_size(-262144)&_txlock=immediate")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		rows := registryGrowth(t, ck, fx, sizes, generations, func(cluster string, gen, first, n int, revoked *time.Time) {
			bulkLoad(t, db, cluster, gen, first, n, revoked)
		}, func() {})
		md.WriteString(growthTable("SQLite", rows))
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		if !growthStore("postgres") {
			t.Skip("CLUSTERKEYS_GROWTH_STORES leaves PostgreSQL out")
		}
		dsn, ok := startPostgres(t)
		if !ok {
			md.WriteString("\nPostgreSQL: not measured (no PostgreSQL server here; test/scripts/postgres.sh install).\n")
			t.Skip("no PostgreSQL server: bash test/scripts/postgres.sh install")
		}
		storeFile := filepath.Join(t.TempDir(), "store")
		if err := os.WriteFile(storeFile, []byte(dsn+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		ck := startLocalrun(t, filepath.Join(bin, "localrun"), false, "--store-file", storeFile)
		ctx := context.Background()
		pg, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pg.Close(context.Background()) })
		rows := registryGrowth(t, ck, fx, sizes, generations, func(cluster string, gen, first, n int, revoked *time.Time) {
			copyLoad(t, pg, cluster, gen, first, n, revoked)
		}, func() {
			// As autovacuum would after a bulk load, before the planner
			// sees the new rows.
			if _, err := pg.Exec(ctx, "ANALYZE issued_certificates"); err != nil {
				t.Fatal(err)
			}
		})
		md.WriteString(growthTable("PostgreSQL", rows))
	})
	addSection("growth", growthMarkdown(md.String(), load))
}

// registryGrowth measures, through ck, the empty cluster, the baseline,
// the growing cluster at each size and the rekeyed one; bulk loads rows
// into the store, analyzed runs after each load.
func registryGrowth(t *testing.T, ck *server, fx fixtures, sizes []int, generations int,
	bulk func(cluster string, gen, first, n int, revoked *time.Time), analyzed func()) []growthRow {
	t.Helper()
	for _, c := range []string{"empty", "page", "big", "gens"} {
		if r := post(t, ck.url+"/v1/clusters/"+c+"/ca", `{"key_algorithm":"ecdsa-p256"}`, "PUT", benchToken); r != http.StatusCreated {
			t.Fatalf("create the CA of %s: status %d", c, r)
		}
	}
	signBody := mustJSON(t, map[string]string{"csr": fx.csrs[0], "profile": "client"})
	measure := func(name, cluster string, rows, gens int) growthRow {
		r := growthRow{name: name, rows: rows, generations: gens}
		list := ck.url + "/v1/clusters/" + cluster + "/certificates"
		r.page = p50Of(t, "GET", list, nil, http.StatusOK)
		r.valid = p50Of(t, "GET", list+"?status=valid", nil, http.StatusOK)
		r.expired = p50Of(t, "GET", list+"?status=expired", nil, http.StatusOK)
		r.generation1 = p50Of(t, "GET", list+"?generation=1", nil, http.StatusOK)
		r.sign = p50Of(t, "POST", list, signBody, http.StatusCreated)
		t.Logf("%-22s rows %8d: sign %s, page %s, valid %s, expired %s, generation=1 %s", name, rows, ms(r.sign), ms(r.page), ms(r.valid), ms(r.expired), ms(r.generation1))
		return r
	}
	var results []growthRow
	results = append(results, measure("empty", "empty", 0, 1))
	// The baseline of the audit pages: just enough certificates that each
	// filter fills its first page (the empty cluster's pages are empty).
	bulk("page", 1, 0, pageBaseline, nil)
	analyzed()
	results = append(results, measure(fmt.Sprintf("%d certificates (baseline)", pageBaseline), "page", pageBaseline, 1))

	// One cluster growing to each size: issued over the last two years,
	// valid for one, never revoked (about half expired, the newest valid).
	loaded := 0
	for _, n := range sizes {
		start := time.Now()
		bulk("big", 1, loaded, n-loaded, nil)
		analyzed()
		t.Logf("loaded %d rows into big in %v", n-loaded, time.Since(start).Round(time.Millisecond))
		loaded = n
		results = append(results, measure(fmt.Sprintf("%d certificates", n), "big", n, 1))
	}

	// 1,000 retired generations, each with certificates revoked by the
	// rekey that retired it; the active generation has none yet.
	start := time.Now()
	for g := 1; g <= generations; g++ {
		if r := post(t, ck.url+"/v1/clusters/gens/ca/rekey", `{}`, "POST", benchToken); r != http.StatusOK {
			t.Fatalf("rekey gens %d: status %d", g, r)
		}
	}
	const perGeneration = 100
	revoked := time.Now().Add(-time.Minute)
	for g := 1; g <= generations; g++ {
		bulk("gens", g, (g-1)*perGeneration, perGeneration, &revoked)
	}
	analyzed()
	t.Logf("%d rekeys and %d rows in %v", generations, generations*perGeneration, time.Since(start).Round(time.Millisecond))
	return append(results, measure(fmt.Sprintf("%d retired generations", generations), "gens", generations*perGeneration, generations+1))
}

// startPostgres starts a private PostgreSQL server with
// test/scripts/postgres.sh (unix socket only) and returns its DSN; ok is
// false when PostgreSQL is not installed and cannot be.
func startPostgres(t *testing.T) (dsn string, ok bool) {
	t.Helper()
	const script = "../scripts/postgres.sh"
	if bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres"); len(bins) == 0 {
		if err := exec.Command("bash", script, "install").Run(); err != nil {
			return "", false
		}
	}
	// The server runs as nobody when started by root: its directory must
	// be reachable, which t.TempDir's parent is not.
	dir, err := os.MkdirTemp("", "ck-bench-pg-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("bash", script, "stop", dir).CombinedOutput(); err != nil {
			t.Errorf("postgres.sh stop: %v: %s", err, out)
		}
		os.RemoveAll(dir)
	})
	var stderr strings.Builder
	cmd := exec.Command("bash", script, "start", dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("postgres.sh start: %v: %s", err, stderr.String())
	}
	return strings.TrimSpace(string(out)), true
}

// copyLoad is bulkLoad for PostgreSQL, with COPY.
func copyLoad(t *testing.T, pg *pgx.Conn, cluster string, gen, first, n int, revoked *time.Time) {
	t.Helper()
	now := time.Now().Add(-time.Hour)
	const span = 2 * 365 * 24 * time.Hour
	var rev any
	if revoked != nil {
		rev = revoked.UTC()
	}
	columns := []string{"cluster", "serial", "generation", "subject", "profile", "user_name", "project", "not_before", "not_after", "issued_at", "revoked_at", "privileged"}
	var marks int
	if err := pg.QueryRow(context.Background(), `SELECT count(*) FROM information_schema.columns
		WHERE table_name = 'issued_certificates' AND column_name = 'lapsed'`).Scan(&marks); err != nil {
		t.Fatal(err)
	}
	if marks > 0 {
		columns = append(columns, "lapsed")
	}
	i := first
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= first+n {
			return nil, nil
		}
		issued := growthIssued(now, span, first, n, i)
		row := []any{cluster, fmt.Sprintf("b%031x", i), gen, fmt.Sprintf("CN=bench-user-%d,O=bench", i), "client", "bench", "ops",
			issued, issued.Add(365 * 24 * time.Hour), issued, rev, false}
		if marks > 0 {
			row = append(row, lapsedAt(issued.Add(365*24*time.Hour), revoked))
		}
		i++
		return row, nil
	})
	if _, err := pg.CopyFrom(context.Background(), pgx.Identifier{"issued_certificates"}, columns, src); err != nil {
		t.Fatal(err)
	}
}

// lapsedAt is the lapsed mark (migration 0008) of a row loaded now that
// expires at notAfter: set when it has expired and was never revoked, as a
// registry whose listings kept marking holds it (a registry that was never
// listed by status is marked by its first listings, a second of marking
// each, and is walked as before 0008 until then).
func lapsedAt(notAfter time.Time, revoked *time.Time) bool {
	return revoked == nil && !notAfter.After(time.Now())
}

// growthIssued is the issue time of row i of a load of n rows from first:
// spread evenly over the span, in order within a load (so that the
// indexes grow at their ends); each load's instants apart from the
// others'.
func growthIssued(now time.Time, span time.Duration, first, n, i int) time.Time {
	return now.Add(-span + time.Duration(int64(span)/int64(n)*int64(i-first)) + time.Duration(first%1000)*time.Microsecond).UTC().Truncate(time.Microsecond)
}

// bulkLoad inserts n certificates of cluster's generation gen into the
// registry, numbered from first, in one transaction of multi-row inserts:
// issued over the last two years, valid for one year, revoked at *revoked
// when not nil.
func bulkLoad(t *testing.T, db *sql.DB, cluster string, gen, first, n int, revoked *time.Time) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // committed below
	const perInsert = 500
	now := time.Now().Add(-time.Hour)
	const span = 2 * 365 * 24 * time.Hour
	var rev any
	if revoked != nil {
		rev = revoked.UTC().Format(sqlite.TimeLayout)
	}
	var marks int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM pragma_table_info('issued_certificates') WHERE name = 'lapsed'").Scan(&marks); err != nil {
		t.Fatal(err)
	}
	cols, row := "", "(?, ?, ?, ?, 'client', 'bench', 'ops', ?, ?, ?, ?, 0)"
	perRow := 8
	if marks > 0 {
		cols, row, perRow = ", lapsed", "(?, ?, ?, ?, 'client', 'bench', 'ops', ?, ?, ?, ?, 0, ?)", 9
	}
	var q strings.Builder
	args := make([]any, 0, perInsert*perRow)
	flush := func() {
		if len(args) == 0 {
			return
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			t.Fatal(err)
		}
		q.Reset()
		args = args[:0]
	}
	for i := first; i < first+n; i++ {
		if len(args) == 0 {
			q.WriteString(`INSERT INTO issued_certificates
				(cluster, serial, generation, subject, profile, user_name, project, not_before, not_after, issued_at, revoked_at, privileged` + cols + `)
				VALUES `)
		} else {
			q.WriteString(", ")
		}
		q.WriteString(row)
		issued := growthIssued(now, span, first, n, i)
		args = append(args, cluster, fmt.Sprintf("b%031x", i), gen, fmt.Sprintf("CN=bench-user-%d,O=bench", i),
			issued.Format(sqlite.TimeLayout), issued.Add(365*24*time.Hour).Format(sqlite.TimeLayout), issued.Format(sqlite.TimeLayout), rev)
		if marks > 0 {
			args = append(args, lapsedAt(issued.Add(365*24*time.Hour), revoked))
		}
		if len(args) == perInsert*perRow {
			flush()
		}
	}
	flush()
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// p50Of sends the request sequentially (at most 50 times or 5 s, at least
// 5 times) and returns the median latency.
func p50Of(t *testing.T, method, url string, body []byte, want int) time.Duration {
	t.Helper()
	tg := target{url: url, token: benchToken}
	var lat []time.Duration
	deadline := time.Now().Add(5 * time.Second)
	for len(lat) < 5 || (len(lat) < 50 && time.Now().Before(deadline)) {
		t0 := time.Now()
		st, b, err := tg.requestMethod(http.DefaultClient, method, body)
		if err != nil || st != want {
			t.Fatalf("%s %s: status %d, %v: %s", method, url, st, err, b)
		}
		lat = append(lat, time.Since(t0))
	}
	return pctOf(lat, .5)
}

func growthMarkdown(tables, load string) string {
	var b strings.Builder
	b.WriteString("## Cost as the registry grows\n\n")
	b.WriteString("`localrun serve` (software custody; SQLite, then PostgreSQL) with four clusters: an empty one; a\n")
	b.WriteString("baseline of 300 certificates; one whose registry is bulk-loaded to each size in turn (issued\n")
	b.WriteString("over the last two years, valid for one, never revoked: the older half expired, the newest\n")
	b.WriteString("valid); and one rekeyed 1,000 times, 100 certificates per retired generation, all revoked by\n")
	b.WriteString("their rekey, none yet in the active one. Each figure is the p50 of sequential requests (up to\n")
	b.WriteString("50 or 5 s): sign-CSR, the first audit page (`GET /v1/clusters/{c}/certificates`, 100\n")
	b.WriteString("entries), the same filtered by status=valid, by status=expired, and by generation=1. Rows are\n")
	b.WriteString("bulk-loaded straight into the store (PostgreSQL: COPY, then ANALYZE), the expired ones marked\n")
	b.WriteString("lapsed (migration 0008) as a registry whose listings kept marking holds them.\n\n")
	b.WriteString(machineLines(load))
	b.WriteString("\nsign × is against the empty cluster; the audit pages' × against the baseline cluster, whose every\n")
	b.WriteString("filter fills its first page (the empty cluster's pages are empty, and serializing 100 entries\n")
	b.WriteString("is most of a page's cost).\n")
	b.WriteString(tables)
	b.WriteString("\nGoal (issue 13): sign p50 and audit-page p50 within 1.2 × their value on the empty cluster.\n")
	return b.String()
}

// growthTable is the table of one store's rows.
func growthTable(store string, rows []growthRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s:\n\n", store)
	b.WriteString("| cluster | rows | sign p50 | × empty | page p50 | × | valid p50 | × | expired p50 | × | generation=1 p50 | × |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	e, base := rows[0], rows[1]
	x := func(a, b time.Duration) string { return fmt.Sprintf("%.2f ×", float64(a)/float64(b)) }
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.name, r.rows,
			ms(r.sign), x(r.sign, e.sign), ms(r.page), x(r.page, base.page), ms(r.valid), x(r.valid, base.valid),
			ms(r.expired), x(r.expired, base.expired), ms(r.generation1), x(r.generation1, base.generation1))
	}
	return b.String()
}
