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

// growthRow is one measured registry: each p50 with the p50 of its
// reference (sign: the empty cluster; pages: the baseline) measured in
// alternation with it.
type growthRow struct {
	name                                    string
	rows, generations                       int
	sign, page, valid, expired, generation1 paired
}

// paired is the p50 of a request and the p50 of its reference, sent in
// alternation in the same rounds.
type paired struct{ got, ref time.Duration }

// ratio is got over ref.
func (p paired) ratio() float64 { return float64(p.got) / float64(p.ref) }

// TestRegistryGrowth is the cost-as-the-work-grows comparison of issue 13:
// sign p50 and audit-page p50 (first page; status=valid; status=expired;
// generation=1) through localrun on SQLite and on PostgreSQL, on a
// cluster whose registry holds 10k, 100k and 1M bulk-loaded certificates
// and on one with 1,000 retired generations, each request alternating with
// the same request to its reference (sign: an empty cluster; pages: a
// baseline of 300 certificates) in the same run.
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
		rows := registryGrowth(t, ck, fx, sizes, generations, growthLoader{
			bulk: func(cluster string, gen, first, n int, revoked *time.Time) {
				bulkLoad(t, db, cluster, gen, first, n, revoked)
			},
			forget: func(cluster string, since time.Time) {
				if _, err := db.Exec("DELETE FROM issued_certificates WHERE cluster = ? AND issued_at >= ?",
					cluster, since.Add(-time.Second).UTC().Format(sqlite.TimeLayout)); err != nil {
					t.Fatal(err)
				}
			},
			analyzed: func() {},
		})
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
		rows := registryGrowth(t, ck, fx, sizes, generations, growthLoader{
			bulk: func(cluster string, gen, first, n int, revoked *time.Time) {
				copyLoad(t, pg, cluster, gen, first, n, revoked)
			},
			forget: func(cluster string, since time.Time) {
				if _, err := pg.Exec(ctx, "DELETE FROM issued_certificates WHERE cluster = $1 AND issued_at >= $2",
					cluster, since.Add(-time.Second)); err != nil {
					t.Fatal(err)
				}
			},
			analyzed: func() {
				// What autovacuum does after a bulk load (an insert-driven
				// vacuum, then analyze), done before the measurement rather
				// than at some moment during it, on a machine of 2 CPUs.
				if _, err := pg.Exec(ctx, "VACUUM (ANALYZE) issued_certificates"); err != nil {
					t.Fatal(err)
				}
			},
		})
		md.WriteString(growthTable("PostgreSQL", rows))
	})
	addSection("growth", growthMarkdown(md.String(), load))
}

// growthLoader writes straight into the store under a running localrun:
// bulk loads rows, forget deletes the rows of cluster issued since a
// time (the signs of a measurement), analyzed runs after each change.
type growthLoader struct {
	bulk     func(cluster string, gen, first, n int, revoked *time.Time)
	forget   func(cluster string, since time.Time)
	analyzed func()
}

// registryGrowth measures, through ck, the empty cluster, the baseline,
// the growing cluster at each size and the rekeyed one; bulk loads rows
// into the store, analyzed runs after each load. Each cluster's requests
// alternate with the same requests to their reference (sign: the empty
// cluster; pages: the baseline), so that the ratio compares figures taken
// in the same seconds on a machine whose load drifts.
func registryGrowth(t *testing.T, ck *server, fx fixtures, sizes []int, generations int, ld growthLoader) []growthRow {
	t.Helper()
	bulk, analyzed := ld.bulk, ld.analyzed
	for _, c := range []string{"empty", "page", "big", "gens"} {
		if r := post(t, ck.url+"/v1/clusters/"+c+"/ca", `{"key_algorithm":"ecdsa-p256"}`, "PUT", benchToken); r != http.StatusCreated {
			t.Fatalf("create the CA of %s: status %d", c, r)
		}
	}
	signBody := mustJSON(t, map[string]string{"csr": fx.csrs[0], "profile": "client"})
	list := func(cluster string) string { return ck.url + "/v1/clusters/" + cluster + "/certificates" }
	measure := func(name, cluster string, rows, gens int) growthRow {
		r := growthRow{name: name, rows: rows, generations: gens}
		page, base := list(cluster), list("page")
		if rows < pageBaseline {
			base = page // the empty cluster: its pages are their own reference
		}
		r.page = pairedP50(t, "GET", base, page, nil, http.StatusOK)
		r.valid = pairedP50(t, "GET", base+"?status=valid", page+"?status=valid", nil, http.StatusOK)
		r.expired = pairedP50(t, "GET", base+"?status=expired", page+"?status=expired", nil, http.StatusOK)
		r.generation1 = pairedP50(t, "GET", base+"?generation=1", page+"?generation=1", nil, http.StatusOK)
		// The signs add certificates newer than every loaded one: they
		// are forgotten once measured, so that the next pages read the
		// loaded rows, not the signed ones, and the empty cluster stays
		// empty.
		signed := time.Now()
		r.sign = pairedP50(t, "POST", list("empty"), page, signBody, http.StatusCreated)
		ld.forget("empty", signed)
		ld.forget(cluster, signed)
		analyzed()
		t.Logf("%-28s rows %8d: sign %s (%.2f ×), page %s (%.2f ×), valid %s (%.2f ×), expired %s (%.2f ×), generation=1 %s (%.2f ×)",
			name, rows, ms(r.sign.got), r.sign.ratio(), ms(r.page.got), r.page.ratio(), ms(r.valid.got), r.valid.ratio(),
			ms(r.expired.got), r.expired.ratio(), ms(r.generation1.got), r.generation1.ratio())
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

// The rounds of pairedP50: a warm-up, then at least growthMinRounds
// and at most growthMaxRounds, or growthBudget once the minimum is done.
const (
	growthWarmup    = 10
	growthMinRounds = 100
	growthMaxRounds = 400
	growthBudget    = 4 * time.Second
)

// pairedP50 sends the request to ref and to url in alternation, one of
// each per round, the order swapped every round, sequentially; after a
// warm-up of each (connections, statement caches, the pages of the indexes
// read), it returns the p50 of each. When url is ref it is sent alone and
// both p50s are its own.
func pairedP50(t *testing.T, method, ref, url string, body []byte, want int) paired {
	t.Helper()
	send := func(u string) time.Duration {
		t0 := time.Now()
		st, b, err := target{url: u, token: benchToken}.requestMethod(http.DefaultClient, method, body)
		if err != nil || st != want {
			t.Fatalf("%s %s: status %d, %v: %s", method, u, st, err, b)
		}
		return time.Since(t0)
	}
	urls := []string{ref, url}
	if ref == url {
		urls = urls[:1]
	}
	for range growthWarmup {
		for _, u := range urls {
			send(u)
		}
	}
	lat := make([][]time.Duration, len(urls))
	deadline := time.Now().Add(growthBudget)
	for i := 0; i < growthMinRounds || (i < growthMaxRounds && time.Now().Before(deadline)); i++ {
		for j := range urls {
			k := (i + j) % len(urls)
			lat[k] = append(lat[k], send(urls[k]))
		}
	}
	p := paired{ref: pctOf(lat[0], .5)}
	p.got = pctOf(lat[len(lat)-1], .5)
	return p
}

func growthMarkdown(tables, load string) string {
	var b strings.Builder
	b.WriteString("## Cost as the registry grows\n\n")
	b.WriteString("`localrun serve` (software custody; SQLite, then PostgreSQL) with four clusters: an empty one; a\n")
	b.WriteString("baseline of 300 certificates; one whose registry is bulk-loaded to each size in turn (issued\n")
	b.WriteString("over the last two years, valid for one, never revoked: the older half expired, the newest\n")
	b.WriteString("valid); and one rekeyed 1,000 times, 100 certificates per retired generation, all revoked by\n")
	b.WriteString("their rekey, none yet in the active one. Each figure is the p50 of sequential requests:\n")
	b.WriteString("sign-CSR, the first audit page (`GET /v1/clusters/{c}/certificates`, 100 entries), the same\n")
	b.WriteString("filtered by status=valid, by status=expired, and by generation=1. Rows are bulk-loaded straight\n")
	b.WriteString("into the store (PostgreSQL: COPY, then VACUUM (ANALYZE), as autovacuum would after a bulk load,\n")
	b.WriteString("but before the measurement rather than during it), the expired ones marked lapsed (migration\n")
	b.WriteString("0008) as a registry whose listings kept marking holds them; the certificates a measurement\n")
	b.WriteString("signs are deleted after it, so that the next pages read the loaded rows.\n\n")
	b.WriteString(machineLines(load))
	fmt.Fprintf(&b, "\nEach request alternates with the same request to its reference, one of each per round, the\n"+
		"order swapped every round (%d warm-up rounds, then %d to %d rounds or %v): sign × is against\n"+
		"the empty cluster; the audit pages' × against the baseline cluster, whose every filter fills\n"+
		"its first page (the empty cluster's pages are empty, and serializing 100 entries is most of a\n"+
		"page's cost). Each × is the ratio of the two p50s of the same rounds; the p50 shown is the\n"+
		"cluster's own.\n", growthWarmup, growthMinRounds, growthMaxRounds, growthBudget)
	b.WriteString(tables)
	b.WriteString("\nGoal (issue 13): sign p50 within 1.2 × the empty cluster's, audit-page p50 within 1.2 × the baseline's.\n")
	return b.String()
}

// growthTable is the table of one store's rows.
func growthTable(store string, rows []growthRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s:\n\n", store)
	b.WriteString("| cluster | rows | sign p50 | × empty | page p50 | × | valid p50 | × | expired p50 | × | generation=1 p50 | × |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	x := func(p paired) string { return fmt.Sprintf("%.2f ×", p.ratio()) }
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.name, r.rows,
			ms(r.sign.got), x(r.sign), ms(r.page.got), x(r.page), ms(r.valid.got), x(r.valid),
			ms(r.expired.got), x(r.expired), ms(r.generation1.got), x(r.generation1))
	}
	return b.String()
}
