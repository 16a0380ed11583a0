package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// CreateCluster stores a cluster and its first CA generation in one
// transaction. It fails with an error wrapping api.ErrConflict when the
// cluster (or the generation's key ref) already exists. c.Generation must
// equal first.Generation.
func (d *DB) CreateCluster(ctx context.Context, c store.Cluster, first store.CAGeneration) error {
	if err := store.CheckNewCluster(c, first); err != nil {
		return err
	}
	err := d.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO clusters
			(name, project, generation, key_algorithm, common_name, validity_days, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			c.Name, c.Project, c.Generation, c.KeyAlgorithm, c.CommonName, c.ValidityDays, formatTime(c.CreatedAt))
		if err != nil {
			return d.wrap(err, "insert cluster")
		}
		if err := d.insertGeneration(ctx, tx, c.Name, first); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create cluster %q: %w", c.Name, err)
	}
	return nil
}

func (d *DB) insertGeneration(ctx context.Context, tx *sql.Tx, cluster string, g store.CAGeneration) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO ca_generations
		(cluster, generation, key_ref, certificate_der, key_algorithm, not_before, not_after, created_at, retired_at, trusted_until)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		cluster, g.Generation, g.KeyRef, nonNil(g.CertificateDER), g.KeyAlgorithm,
		formatTime(g.NotBefore), formatTime(g.NotAfter), formatTime(g.CreatedAt),
		formatTime(g.RetiredAt), formatTime(g.TrustedUntil))
	if err != nil {
		return d.wrap(err, "insert CA generation %d", g.Generation)
	}
	return nil
}

const clusterSQL = `SELECT project, generation, key_algorithm, common_name, validity_days, created_at, policy
	FROM clusters WHERE name = ?`

// Cluster returns a cluster (api.ErrNotFound when absent).
func (d *DB) Cluster(ctx context.Context, name string) (store.Cluster, error) {
	c := store.Cluster{Name: name}
	err := d.stmts.cluster.QueryRowContext(ctx, name).
		Scan(&c.Project, &c.Generation, &c.KeyAlgorithm, &c.CommonName, &c.ValidityDays, tm(&c.CreatedAt), pol(&c.Policy))
	if err != nil {
		return store.Cluster{}, d.wrap(err, "read cluster %q", name)
	}
	return c, nil
}

// genColumns are the columns scanGeneration reads, in its order.
const genColumns = `generation, key_ref, certificate_der, key_algorithm,
	not_before, not_after, created_at, retired_at, trusted_until`

// scanGeneration reads one row of genColumns.
func scanGeneration(rows scanner, cluster string) (store.CAGeneration, error) {
	g := store.CAGeneration{Cluster: cluster}
	err := rows.Scan(&g.Generation, &g.KeyRef, &g.CertificateDER, &g.KeyAlgorithm,
		tm(&g.NotBefore), tm(&g.NotAfter), tm(&g.CreatedAt), tm(&g.RetiredAt), tm(&g.TrustedUntil))
	return g, err
}

// queryGenerations runs a query of genColumns and reads every row.
func (d *DB) queryGenerations(ctx context.Context, cluster, what, query string, args ...any) ([]store.CAGeneration, error) {
	gens, err := queryAll(ctx, d, func(row scanner) (store.CAGeneration, error) {
		return scanGeneration(row, cluster)
	}, query, args...)
	if err != nil {
		return nil, d.wrap(err, "read %s of cluster %q", what, cluster)
	}
	return gens, nil
}

// Generations returns every CA generation of a cluster, newest first. A
// cluster that does not exist has none (and no error). It reads the whole
// history: a sign or a show needs ActiveCA or TrustedGenerations instead.
func (d *DB) Generations(ctx context.Context, cluster string) ([]store.CAGeneration, error) {
	return d.queryGenerations(ctx, cluster, "CA generations",
		"SELECT "+genColumns+" FROM ca_generations WHERE cluster = ? ORDER BY generation DESC", cluster)
}

const activeCASQL = `SELECT c.project, c.generation, c.key_algorithm, c.common_name,
			c.validity_days, c.created_at, c.policy,
			g.key_ref, g.certificate_der, g.key_algorithm, g.not_before, g.not_after,
			g.created_at, g.retired_at, g.trusted_until
		FROM clusters c JOIN ca_generations g ON g.cluster = c.name AND g.generation = c.generation
		WHERE c.name = ?`

// ActiveCA returns a cluster and its active CA generation in one read
// (api.ErrNotFound when the cluster is absent).
func (d *DB) ActiveCA(ctx context.Context, name string) (store.Cluster, store.CAGeneration, error) {
	c := store.Cluster{Name: name}
	g := store.CAGeneration{Cluster: name}
	err := d.stmts.activeCA.QueryRowContext(ctx, name).
		Scan(&c.Project, &c.Generation, &c.KeyAlgorithm, &c.CommonName, &c.ValidityDays, tm(&c.CreatedAt), pol(&c.Policy),
			&g.KeyRef, &g.CertificateDER, &g.KeyAlgorithm, tm(&g.NotBefore), tm(&g.NotAfter),
			tm(&g.CreatedAt), tm(&g.RetiredAt), tm(&g.TrustedUntil))
	if err != nil {
		return store.Cluster{}, store.CAGeneration{}, d.wrap(err, "read cluster %q and its active CA", name)
	}
	g.Generation = c.Generation
	return c, g, nil
}

// TrustedGenerations returns the active generation of a cluster (whose
// number the caller read with the cluster) and the retired generations
// still trusted after now (TrustedUntil > now), newest
// first: what a trust bundle holds, and nothing of the rest of the
// history.
func (d *DB) TrustedGenerations(ctx context.Context, cluster string, active int, now time.Time) ([]store.CAGeneration, error) {
	if !store.ValidInstant(now) {
		return nil, fmt.Errorf("read trusted CA generations of cluster %q: invalid instant %v", cluster, now)
	}
	return d.queryGenerations(ctx, cluster, "trusted CA generations",
		`SELECT `+genColumns+` FROM ca_generations WHERE cluster = ?1 AND generation = ?2
		UNION ALL
		SELECT `+genColumns+` FROM ca_generations WHERE cluster = ?1 AND trusted_until > ?3 AND generation <> ?2
		ORDER BY generation DESC`, cluster, active, formatTime(now))
}

// Rekey atomically checks that the cluster's active generation is expected
// (else an error wrapping api.ErrGenerationMismatch; a missing cluster gives
// api.ErrNotFound), inserts next (whose Generation must be expected+1),
// marks every older generation still trusted as retired at now and trusted
// until trustedUntil (never later than a TrustedUntil it already has),
// marks the certificates they issued as revoked at trustedUntil (never
// later than a RevokedAt they already have), and moves the pointer. All of
// it is one transaction: a crash leaves either everything or nothing.
func (d *DB) Rekey(ctx context.Context, cluster string, expected int, next store.CAGeneration, now, trustedUntil time.Time) error {
	if err := store.CheckRekey(cluster, expected, next, now, trustedUntil); err != nil {
		return err
	}
	err := d.write(ctx, func(tx *sql.Tx) error {
		if err := d.move(ctx, tx, clusterGeneration, cluster, expected, next.Generation); err != nil {
			return err
		}
		return d.retire(ctx, tx, cluster, expected, next, now, trustedUntil)
	})
	if err != nil {
		return fmt.Errorf("rekey cluster %q from generation %d: %w", cluster, expected, err)
	}
	return nil
}

// retire is the rest of a rekey once the pointer moved: the older
// generations are retired, their certificates revoked when they leave the
// trust bundle, and next is inserted.
func (d *DB) retire(ctx context.Context, tx *sql.Tx, cluster string, expected int, next store.CAGeneration, now, trustedUntil time.Time) error {
	nowS, untilS := formatTime(now), formatTime(trustedUntil)
	// Cap the generations retired earlier whose grace outlasts this one.
	if _, err := tx.ExecContext(ctx, `UPDATE ca_generations SET trusted_until = ?
		WHERE cluster = ? AND generation <= ? AND retired_at IS NOT NULL AND trusted_until > ?`,
		untilS, cluster, expected, untilS); err != nil {
		return d.wrap(err, "cap retired generations")
	}
	if _, err := tx.ExecContext(ctx, `UPDATE ca_generations SET retired_at = ?, trusted_until = ?
		WHERE cluster = ? AND generation <= ? AND retired_at IS NULL`,
		nowS, untilS, cluster, expected); err != nil {
		return d.wrap(err, "retire generation %d", expected)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE issued_certificates SET revoked_at = ?
		WHERE cluster = ? AND generation <= ? AND (revoked_at IS NULL OR revoked_at > ?)`,
		untilS, cluster, expected, untilS); err != nil {
		return d.wrap(err, "revoke the certificates of retired generations")
	}
	return d.insertGeneration(ctx, tx, cluster, next)
}

// insertCertificateSQL inserts one registry entry; see RecordCertificate.
//
// It inserts nothing when the requester is revoked on the cluster
// (user_revocations), nor, when ?14 (RequireActive) is set, when ?3 is not
// the cluster's active generation, nor, when ?15 (RequirePolicy) is set,
// when ?16 is not the cluster's stored policy text (NULL and "" both being
// the zero policy): run inside the write transaction, those checks and the
// insert are one atomic step against a concurrent RevokeUser, Rekey or
// SetPolicy.
const insertCertificateSQL = `INSERT INTO issued_certificates
	(cluster, serial, generation, subject, profile, user_name, project, not_before, not_after, issued_at, revoked_at, privileged,
	 certificate_der)
	SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,
		CASE WHEN ?11 IS NOT NULL THEN ?11
		ELSE (SELECT trusted_until FROM ca_generations WHERE cluster = ?1 AND generation = ?3) END, ?12,
		?13
	WHERE NOT EXISTS (SELECT 1 FROM user_revocations WHERE cluster = ?1 AND user_name = ?6)
		AND (NOT ?14 OR (SELECT generation FROM clusters WHERE name = ?1) = ?3)
		AND (NOT ?15 OR (SELECT COALESCE(policy, '') FROM clusters WHERE name = ?1) = COALESCE(?16, ''))`

// RecordCertificate adds an issued certificate to the registry. The
// cluster and generation must exist (else api.ErrNotFound); a serial the
// cluster already has gives api.ErrConflict, a requester revoked on the
// cluster api.ErrUserRevoked (checked in the transaction that records). A
// certificate recorded for a generation that a rekey already retired is
// stored as revoked when that generation leaves the trust bundle, so a
// sign racing a rekey is never left out of the revocation; with
// c.RequireActive it is refused instead (api.ErrGenerationMismatch), and
// with c.RequirePolicy when the cluster's policy changed
// (store.ErrPolicyChanged), both checked in the same statement. Concurrent
// calls share one transaction (a group commit, see certQueue); each
// returns when its certificate is committed, or with its own error.
func (d *DB) RecordCertificate(ctx context.Context, c store.IssuedCertificate) error {
	if c.Cluster == "" || c.Serial == "" || c.IssuedAt.IsZero() {
		// The listing pages by (issued_at, serial): an entry without an
		// issue time could not be reached past the first page.
		return errors.New("record certificate: cluster, serial and issue time are required")
	}
	if err := checkTimes(c.NotBefore, c.NotAfter, c.IssuedAt, c.RevokedAt); err != nil {
		return fmt.Errorf("record certificate %s of cluster %q: %w", c.Serial, c.Cluster, err)
	}
	err := d.recordQueued(ctx, c)
	if err != nil {
		return fmt.Errorf("record certificate %s of cluster %q generation %d: %w", c.Serial, c.Cluster, c.Generation, err)
	}
	return nil
}

// Certificates returns one page of a cluster's issued-certificate
// registry, newest first (by IssuedAt, then by Serial, both descending),
// filtered as q says, at most q.Limit entries. Every filter and the
// position are applied in SQL, through the indexes of migrations 0003,
// 0007 and 0008 (see certificatesSQL), so a page costs about what it
// returns, whatever the size of the registry.
func (d *DB) Certificates(ctx context.Context, q store.CertificateQuery) ([]store.IssuedCertificate, error) {
	if err := store.CheckCertificateQuery(q); err != nil {
		return nil, fmt.Errorf("list certificates of cluster %q: %w", q.Cluster, err)
	}
	backlog := false
	if q.Status == store.StatusValid || q.Status == store.StatusExpired {
		backlog = d.markBacklog(ctx, q.Cluster, q.Now)
	}
	return d.certificates(ctx, q, backlog)
}

// certificates is Certificates once the backlog is known (see
// certificatesSQL).
func (d *DB) certificates(ctx context.Context, q store.CertificateQuery, backlog bool) ([]store.IssuedCertificate, error) {
	query, args := certificatesSQL(q, backlog)
	rows, err := d.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, d.wrap(err, "list certificates of cluster %q", q.Cluster)
	}
	defer rows.Close()
	certs := make([]store.IssuedCertificate, 0, min(q.Limit, 1024))
	for rows.Next() {
		c := store.IssuedCertificate{Cluster: q.Cluster}
		if err := rows.Scan(&c.Serial, &c.Generation, &c.Subject, &c.Profile, &c.User, &c.Project,
			tm(&c.NotBefore), tm(&c.NotAfter), tm(&c.IssuedAt), tm(&c.RevokedAt), &c.Privileged); err != nil {
			return nil, d.wrap(err, "list certificates of cluster %q", q.Cluster)
		}
		certs = append(certs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, d.wrap(err, "list certificates of cluster %q", q.Cluster)
	}
	return certs, nil
}

// The indexes the arms of a listing are told to read (migrations 0003,
// 0007 and 0008).
const (
	revokedKey   = "issued_certificates_revoked_key"
	liveKey      = "issued_certificates_live_key"
	liveExpiry   = "issued_certificates_live_expiry"
	byRevocation = "issued_certificates_by_revocation"
)

// certificatesSQL returns the statement and arguments of q, which
// store.CheckCertificateQuery accepted (Certificates checks it once).
//
// The status filters valid and expired hold for certificates never revoked
// and for those whose revocation is still ahead (a rekey's grace). They are
// arms of a UNION ALL that SQLite merges in listing order (migrations 0007
// and 0008). The never revoked are split by lapsed (see MarkExpired): the
// side that mostly matches (lapsed for expired, unmarked for valid) is
// walked newest first through issued_certificates_live_key and stops at a
// page; the other side is read by not_after through
// issued_certificates_live_expiry and sorted, which is cheap while the
// marks keep up (the few expired not marked yet; the lapsed that a listing
// whose clock lags the marker's still sees valid). The revocations still
// ahead are read by their time (issued_certificates_by_revocation). Every
// arm tests not_after against q.Now, so lapsed decides where a row is
// looked for, never whether it matches. With backlog (a large backlog of
// expired rows not marked yet, see markBacklog) the unmarked expired are
// walked in listing order instead of sorted, as before migration 0008.
func certificatesSQL(q store.CertificateQuery, backlog bool) (string, []any) {
	// The conditions every arm shares, after the cluster's.
	var shared strings.Builder
	var sharedArgs []any
	if q.User != "" {
		shared.WriteString(" AND user_name = ?")
		sharedArgs = append(sharedArgs, q.User)
	}
	if q.Serial != "" {
		shared.WriteString(" AND serial = ?")
		sharedArgs = append(sharedArgs, q.Serial)
	}
	if q.Generation != 0 {
		shared.WriteString(" AND generation = ?")
		sharedArgs = append(sharedArgs, q.Generation)
	}
	if k := q.After; k != nil {
		shared.WriteString(" AND (issued_at, serial) < (?, ?)")
		sharedArgs = append(sharedArgs, formatTime(k.IssuedAt), k.Serial)
	}
	// The arms, each a condition with its arguments: one without a status.
	type arm struct {
		cond string
		args []any
		// index, when set, is the index the arm must read: SQLite would
		// rather walk one in listing order and skip, which for these arms
		// is most of the cluster.
		index string
	}
	// The arm walked in listing order reads live_key, unless another
	// filter has its own index: SQLite would rather read the rows valid by
	// not_after, and sort them all.
	walk := ""
	if q.User == "" && q.Serial == "" && q.Generation == 0 {
		walk = liveKey
	}
	arms := []arm{{}}
	if walk != "" {
		// The whole registry, merged from the three indexes that hold it
		// in listing order (migration 0008 dropped by_key, one index less
		// for every sign to write).
		arms = []arm{
			{" AND revoked_at IS NOT NULL", nil, revokedKey},
			{" AND revoked_at IS NULL AND lapsed = 0", nil, liveKey},
			{" AND revoked_at IS NULL AND lapsed = 1", nil, liveKey},
		}
	}
	if q.Status != "" {
		now := formatTime(q.Now)
		// The same rules as the listing's status: revoked once revoked_at
		// has passed, else expired once not_after has passed (a NULL
		// not_after is the zero time, long past), else valid.
		switch q.Status {
		case store.StatusRevoked:
			arms = []arm{{" AND revoked_at <= ?", []any{now}, ""}}
		case store.StatusExpired:
			unmarked := liveExpiry
			if backlog {
				unmarked = walk
			}
			const expired = " AND (not_after IS NULL OR not_after <= ?)"
			arms = []arm{
				{" AND revoked_at IS NULL AND lapsed = 1" + expired, []any{now}, walk},
				// The unmarked by not_after: the NULLs apart, for SQLite
				// reads an OR of the two by the index's first columns only.
				{" AND revoked_at IS NULL AND lapsed = 0 AND not_after <= ?", []any{now}, unmarked},
				{" AND revoked_at IS NULL AND lapsed = 0 AND not_after IS NULL", nil, liveExpiry},
				{" AND revoked_at > ?" + expired, []any{now, now}, byRevocation},
			}
		case store.StatusValid:
			arms = []arm{
				{" AND revoked_at IS NULL AND lapsed = 0 AND not_after > ?", []any{now}, walk},
				{" AND revoked_at IS NULL AND lapsed = 1 AND not_after > ?", []any{now}, liveExpiry},
				{" AND revoked_at > ? AND not_after > ?", []any{now, now}, byRevocation},
			}
		}
	}
	var b strings.Builder
	var args []any
	for i, a := range arms {
		if i > 0 {
			b.WriteString("\n\t\tUNION ALL\n\t\t")
		}
		b.WriteString(`SELECT serial, generation, subject, profile, user_name, project,
			not_before, not_after, issued_at, revoked_at, privileged
		FROM issued_certificates`)
		if a.index != "" {
			b.WriteString(" INDEXED BY " + a.index)
		}
		b.WriteString(" WHERE cluster = ?")
		b.WriteString(shared.String())
		b.WriteString(a.cond)
		args = append(args, q.Cluster)
		args = append(args, sharedArgs...)
		args = append(args, a.args...)
	}
	b.WriteString(" ORDER BY issued_at DESC, serial DESC LIMIT ?")
	args = append(args, q.Limit)
	return b.String(), args
}

// nonNil returns b, or an empty slice for nil, so a NOT NULL BLOB column
// accepts it.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
