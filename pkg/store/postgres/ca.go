package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clusterkeys/clusterkeys/pkg/api"
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
	err := d.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO clusters
			(name, project, generation, key_algorithm, common_name, validity_days, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			c.Name, c.Project, c.Generation, c.KeyAlgorithm, c.CommonName, c.ValidityDays, ts(c.CreatedAt))
		if err != nil {
			return d.wrap(err, "insert cluster")
		}
		return d.insertGeneration(ctx, tx, c.Name, first)
	})
	if err != nil {
		return fmt.Errorf("create cluster %q: %w", c.Name, err)
	}
	return nil
}

func (d *DB) insertGeneration(ctx context.Context, tx pgx.Tx, cluster string, g store.CAGeneration) error {
	_, err := tx.Exec(ctx, `INSERT INTO ca_generations
		(cluster, generation, key_ref, certificate_der, key_algorithm, not_before, not_after, created_at, retired_at, trusted_until)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		cluster, g.Generation, g.KeyRef, nonNil(g.CertificateDER), g.KeyAlgorithm,
		ts(g.NotBefore), ts(g.NotAfter), ts(g.CreatedAt), ts(g.RetiredAt), ts(g.TrustedUntil))
	if err != nil {
		return d.wrap(err, "insert CA generation %d", g.Generation)
	}
	return nil
}

// Cluster returns a cluster (api.ErrNotFound when absent).
func (d *DB) Cluster(ctx context.Context, name string) (store.Cluster, error) {
	c := store.Cluster{Name: name}
	err := d.queryRow(ctx, `SELECT project, generation, key_algorithm, common_name, validity_days, created_at, policy
		FROM clusters WHERE name = $1`, []any{name},
		&c.Project, &c.Generation, &c.KeyAlgorithm, &c.CommonName, &c.ValidityDays, tm(&c.CreatedAt), pol(&c.Policy))
	if err != nil {
		return store.Cluster{}, d.wrap(err, "read cluster %q", name)
	}
	return c, nil
}

// genColumns are the columns scanGeneration reads, in its order.
const genColumns = `generation, key_ref, certificate_der, key_algorithm,
	not_before, not_after, created_at, retired_at, trusted_until`

// scanGeneration reads one row of genColumns.
func scanGeneration(row pgx.Row, cluster string) (store.CAGeneration, error) {
	g := store.CAGeneration{Cluster: cluster}
	err := row.Scan(&g.Generation, &g.KeyRef, &g.CertificateDER, &g.KeyAlgorithm,
		tm(&g.NotBefore), tm(&g.NotAfter), tm(&g.CreatedAt), tm(&g.RetiredAt), tm(&g.TrustedUntil))
	return g, err
}

// queryGenerations runs a query of genColumns and reads every row.
func (d *DB) queryGenerations(ctx context.Context, cluster, what, query string, args ...any) ([]store.CAGeneration, error) {
	gens, err := queryAll(ctx, d, func(row pgx.Row) (store.CAGeneration, error) {
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
		"SELECT "+genColumns+" FROM ca_generations WHERE cluster = $1 ORDER BY generation DESC", cluster)
}

// ActiveCA returns a cluster and its active CA generation in one read (one
// statement, one snapshot; api.ErrNotFound when the cluster is absent).
func (d *DB) ActiveCA(ctx context.Context, name string) (store.Cluster, store.CAGeneration, error) {
	c := store.Cluster{Name: name}
	g := store.CAGeneration{Cluster: name}
	err := d.queryRow(ctx, `SELECT c.project, c.generation, c.key_algorithm, c.common_name,
			c.validity_days, c.created_at, c.policy,
			g.key_ref, g.certificate_der, g.key_algorithm, g.not_before, g.not_after,
			g.created_at, g.retired_at, g.trusted_until
		FROM clusters c JOIN ca_generations g ON g.cluster = c.name AND g.generation = c.generation
		WHERE c.name = $1`, []any{name},
		&c.Project, &c.Generation, &c.KeyAlgorithm, &c.CommonName, &c.ValidityDays, tm(&c.CreatedAt), pol(&c.Policy),
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
// still trusted after now (TrustedUntil > now), newest first: what a trust
// bundle holds, and nothing of the rest of the history.
func (d *DB) TrustedGenerations(ctx context.Context, cluster string, active int, now time.Time) ([]store.CAGeneration, error) {
	if !store.ValidInstant(now) {
		return nil, fmt.Errorf("read trusted CA generations of cluster %q: invalid instant %v", cluster, now)
	}
	return d.queryGenerations(ctx, cluster, "trusted CA generations",
		`SELECT `+genColumns+` FROM ca_generations WHERE cluster = $1 AND generation = $2
		UNION ALL
		SELECT `+genColumns+` FROM ca_generations WHERE cluster = $1 AND trusted_until > $3 AND generation <> $2
		ORDER BY generation DESC`, cluster, active, ts(now))
}

// Rekey atomically checks that the cluster's active generation is expected
// (else an error wrapping api.ErrGenerationMismatch; a missing cluster gives
// api.ErrNotFound), inserts next (whose Generation must be expected+1),
// marks every older generation still trusted as retired at now and trusted
// until trustedUntil (never later than a TrustedUntil it already has),
// marks the certificates they issued as revoked at trustedUntil (never
// later than a RevokedAt they already have), and moves the pointer. All of
// it is one transaction: a crash or a lost connection leaves either
// everything or nothing.
//
// The pointer moves first, with UPDATE … WHERE generation = expected: a
// concurrent rekey of the same cluster, on this instance or another, waits
// for the row, then finds it moved and loses.
func (d *DB) Rekey(ctx context.Context, cluster string, expected int, next store.CAGeneration, now, trustedUntil time.Time) error {
	if err := store.CheckRekey(cluster, expected, next, now, trustedUntil); err != nil {
		return err
	}
	err := d.write(ctx, func(tx pgx.Tx) error {
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
func (d *DB) retire(ctx context.Context, tx pgx.Tx, cluster string, expected int, next store.CAGeneration, now, trustedUntil time.Time) error {
	nowT, until := ts(now), ts(trustedUntil)
	// Cap the generations retired earlier whose grace outlasts this one.
	if _, err := tx.Exec(ctx, `UPDATE ca_generations SET trusted_until = $1
		WHERE cluster = $2 AND generation <= $3 AND retired_at IS NOT NULL AND trusted_until > $1`,
		until, cluster, expected); err != nil {
		return d.wrap(err, "cap retired generations")
	}
	if _, err := tx.Exec(ctx, `UPDATE ca_generations SET retired_at = $1, trusted_until = $2
		WHERE cluster = $3 AND generation <= $4 AND retired_at IS NULL`,
		nowT, until, cluster, expected); err != nil {
		return d.wrap(err, "retire generation %d", expected)
	}
	if _, err := tx.Exec(ctx, `UPDATE issued_certificates SET revoked_at = $1
		WHERE cluster = $2 AND generation <= $3 AND (revoked_at IS NULL OR revoked_at > $1)`,
		until, cluster, expected); err != nil {
		return d.wrap(err, "revoke the certificates of retired generations")
	}
	return d.insertGeneration(ctx, tx, cluster, next)
}

// RecordCertificate adds an issued certificate to the registry. The
// cluster and generation must exist (else api.ErrNotFound); a serial the
// cluster already has gives api.ErrConflict. A certificate recorded for a
// generation that a rekey already retired is stored as revoked when that
// generation leaves the trust bundle; with c.RequireActive it is refused
// instead (api.ErrGenerationMismatch): the insert takes nothing from a
// generation row that, once its share lock is granted, is retired.
//
// It is one round trip: the insert reads the generation's row FOR SHARE,
// and a rekey retiring it at the same time (which updates that row) either
// commits first, and the certificate is stored revoked, or waits for this
// insert, and then revokes it. A requester revoked on the cluster gives
// api.ErrUserRevoked and nothing is recorded: the second statement of the
// same implicit transaction, which takes a new snapshot after the share
// lock was granted, deletes the row again if a user revocation is visible.
// RevokeUser locks the generation rows first (FOR NO KEY UPDATE, which
// conflicts with FOR SHARE), so either it waited for this transaction and
// then revokes the certificate, or this insert waited for it and then sees
// the revocation.
func (d *DB) RecordCertificate(ctx context.Context, c store.IssuedCertificate) error {
	if c.Cluster == "" || c.Serial == "" || c.IssuedAt.IsZero() {
		// The listing pages by (issued_at, serial): an entry without an
		// issue time could not be reached past the first page.
		return errors.New("record certificate: cluster, serial and issue time are required")
	}
	if err := checkTimes(c.NotBefore, c.NotAfter, c.IssuedAt, c.RevokedAt); err != nil {
		return fmt.Errorf("record certificate %s of cluster %q: %w", c.Serial, c.Cluster, err)
	}
	policy, err := store.RequiredPolicyText(c)
	if err != nil {
		return fmt.Errorf("record certificate %s of cluster %q generation %d: %w", c.Serial, c.Cluster, c.Generation, err)
	}
	err = d.attempt(ctx, func() error {
		// One round trip: both statements go in one pipeline, which the
		// server runs as one implicit transaction.
		b := &pgx.Batch{}
		b.Queue(insertCertificateSQL, certificateArgs(c, policy)...)
		b.Queue(refuseRevokedSQL, c.Cluster, c.Serial, c.User)
		br := d.pool.SendBatch(ctx, b)
		defer br.Close()
		tag, err := br.Exec()
		if err != nil {
			return d.wrap(err, "insert")
		}
		if tag.RowsAffected() != 1 {
			if err := br.Close(); err != nil {
				return d.wrap(err, "insert")
			}
			return d.notRecorded(ctx, c, policy)
		}
		if tag, err = br.Exec(); err != nil {
			return d.wrap(err, "check the requester")
		}
		if tag.RowsAffected() != 0 {
			return fmt.Errorf("user %q is revoked on cluster %q: %w", c.User, c.Cluster, api.ErrUserRevoked)
		}
		if err := br.Close(); err != nil {
			return d.wrap(err, "commit")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record certificate %s of cluster %q generation %d: %w", c.Serial, c.Cluster, c.Generation, err)
	}
	return nil
}

// notRecorded says why the insert of c wrote nothing: its generation
// missing (api.ErrNotFound) or, for c.RequireActive, retired
// (api.ErrGenerationMismatch) or, for c.RequirePolicy (whose stored text
// is policy), a policy that changed (store.ErrPolicyChanged).
func (d *DB) notRecorded(ctx context.Context, c store.IssuedCertificate, policy *string) error {
	var retired, samePolicy bool
	err := d.pool.QueryRow(ctx, `SELECT g.retired_at IS NOT NULL, COALESCE(c.policy, '') = COALESCE($3::text, '')
		FROM ca_generations g JOIN clusters c ON c.name = g.cluster
		WHERE g.cluster = $1 AND g.generation = $2`,
		c.Cluster, c.Generation, policy).Scan(&retired, &samePolicy)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("no CA generation %d: %w", c.Generation, api.ErrNotFound)
	case err != nil:
		return d.wrap(err, "read CA generation %d", c.Generation)
	case c.RequireActive && retired:
		return fmt.Errorf("generation %d is no longer active on cluster %q: %w", c.Generation, c.Cluster, api.ErrGenerationMismatch)
	case c.RequirePolicy != nil && !samePolicy:
		return fmt.Errorf("cluster %q: %w", c.Cluster, store.ErrPolicyChanged)
	}
	return fmt.Errorf("no CA generation %d: %w", c.Generation, api.ErrNotFound)
}

// insertCertificateSQL inserts one registry entry (certificateArgs),
// holding a share lock on its CA generation's row; nothing when $14
// (RequireActive) is set and that row, as the lock found it, is retired,
// nor when $15 (RequirePolicy) is set and the cluster's policy text is not
// $16 (NULL and the empty text both the zero policy). The policy is read from the
// statement's snapshot, without a lock: nothing that sets a policy reads
// the registry, so a certificate recorded under the policy of that
// snapshot is ordered before a SetPolicy that commits after it.
const insertCertificateSQL = `INSERT INTO issued_certificates
	(cluster, serial, generation, subject, profile, user_name, project, not_before, not_after, issued_at, revoked_at, privileged,
	 certificate_der)
	SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, COALESCE($11, g.trusted_until), $12, $13
	FROM (SELECT trusted_until, retired_at FROM ca_generations WHERE cluster = $1 AND generation = $3 FOR SHARE) AS g
	WHERE (NOT $14::boolean OR g.retired_at IS NULL)
		AND (NOT $15::boolean OR EXISTS (SELECT 1 FROM clusters WHERE name = $1 AND COALESCE(policy, '') = COALESCE($16::text, '')))`

// refuseRevokedSQL takes back the entry just inserted when its requester
// is revoked on the cluster.
const refuseRevokedSQL = `DELETE FROM issued_certificates WHERE cluster = $1 AND serial = $2
	AND EXISTS (SELECT 1 FROM user_revocations WHERE cluster = $1 AND user_name = $3)`

// certificateArgs are the arguments of insertCertificateSQL for c, whose
// RequirePolicy has the stored text policy (store.RequiredPolicyText).
func certificateArgs(c store.IssuedCertificate, policy *string) []any {
	return []any{c.Cluster, c.Serial, c.Generation, c.Subject, c.Profile, c.User, c.Project,
		ts(c.NotBefore), ts(c.NotAfter), ts(c.IssuedAt), ts(c.RevokedAt), c.Privileged, c.CertificateDER, c.RequireActive,
		c.RequirePolicy != nil, policy}
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
	// A listing by status is planned with its arguments every time (an
	// unnamed statement), never with a cached generic plan: a generic plan
	// cannot know how few rows the sorted arms read (those whose lapsed
	// mark disagrees with the status at now; the revocations ahead of now),
	// and PostgreSQL may keep one chosen on a small cluster for a large
	// one. The other listings have one arm and keep their prepared plans.
	if q.Status == store.StatusValid || q.Status == store.StatusExpired {
		args = append([]any{pgx.QueryExecModeExec}, args...)
	}
	var certs []store.IssuedCertificate
	err := d.query(ctx, func() { certs = make([]store.IssuedCertificate, 0, min(q.Limit, 1024)) }, func(rows pgx.Rows) error {
		c := store.IssuedCertificate{Cluster: q.Cluster}
		if err := rows.Scan(&c.Serial, &c.Generation, &c.Subject, &c.Profile, &c.User, &c.Project,
			tm(&c.NotBefore), tm(&c.NotAfter), tm(&c.IssuedAt), tm(&c.RevokedAt), &c.Privileged); err != nil {
			return err
		}
		certs = append(certs, c)
		return nil
	}, query, args...)
	if err != nil {
		return nil, d.wrap(err, "list certificates of cluster %q", q.Cluster)
	}
	return certs, nil
}

// certificatesSQL returns the statement and arguments of q (which
// store.CheckCertificateQuery accepted; Certificates checks it once): the same
// selection and order as SQLite's, with issued_at NULLS LAST (where SQLite
// sorts NULL) and serials in byte order (the column is COLLATE "C").
//
// As on SQLite, the status filters valid and expired are arms of a UNION
// ALL (migrations 0007 and 0008): the never revoked whose lapsed mark
// agrees with the status, newest first through
// issued_certificates_live_key; those whose mark disagrees (few while the
// marks keep up), found by not_after through the expression indexes
// issued_certificates_unmarked_expiry and issued_certificates_lapsed_expiry
// (whose statistics tell the planner they are few); and those whose
// revocation is still
// ahead, found by its time. None reads the revoked history of retired
// generations, nor an expired page the certificates still valid. Every arm
// tests not_after against q.Now: the mark says where a row is looked for,
// never whether it matches. With backlog (a large backlog of expired rows
// not marked yet, see markBacklog) the unmarked expired are selected by
// their columns, which the planner walks in listing order, as before
// migration 0008.
func certificatesSQL(q store.CertificateQuery, backlog bool) (string, []any) {
	args := []any{q.Cluster}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	// The conditions every arm shares (their parameters are numbered, so
	// each arm names the same ones).
	shared := " WHERE cluster = $1"
	if q.User != "" {
		shared += " AND user_name = " + arg(q.User)
	}
	if q.Serial != "" {
		shared += " AND serial = " + arg(q.Serial)
	}
	if q.Generation != 0 {
		shared += " AND generation = " + arg(q.Generation)
	}
	if k := q.After; k != nil {
		shared += " AND (issued_at, serial) < (" + arg(ts(k.IssuedAt)) + ", " + arg(k.Serial) + ")"
	}
	arms := []string{""}
	if q.Status != "" {
		now := arg(ts(q.Now))
		// The same rules as the listing's status: revoked once revoked_at
		// has passed, else expired once not_after has passed (a NULL
		// not_after is the zero time, long past), else valid.
		switch q.Status {
		case store.StatusRevoked:
			arms = []string{" AND revoked_at <= " + now}
		case store.StatusExpired:
			expired := " AND (not_after IS NULL OR not_after <= " + now + ")"
			unmarked := " AND " + unmarkedExpiry + " <= " + now
			if backlog {
				unmarked = " AND revoked_at IS NULL AND NOT lapsed" + expired
			}
			arms = []string{
				" AND revoked_at IS NULL AND lapsed" + expired,
				unmarked,
				" AND revoked_at > " + now + expired,
			}
		case store.StatusValid:
			valid := " AND not_after > " + now
			arms = []string{
				" AND revoked_at IS NULL AND NOT lapsed" + valid,
				" AND " + lapsedExpiry + " > " + now,
				" AND revoked_at > " + now + valid,
			}
		}
	}
	const columns = `SELECT serial, generation, subject, profile, user_name, project,
			not_before, not_after, issued_at, revoked_at, privileged
		FROM issued_certificates`
	const order = " ORDER BY issued_at DESC NULLS LAST, serial DESC LIMIT "
	limit := arg(q.Limit)
	if len(arms) == 1 {
		return columns + shared + arms[0] + order + limit, args
	}
	// Each arm is ordered and limited on its own, so that the planner
	// walks the never revoked in index order and stops at a page, and
	// sorts only the few revocations ahead; the union is at most two pages.
	var b strings.Builder
	for i, a := range arms {
		if i > 0 {
			b.WriteString("\n\t\tUNION ALL\n\t\t")
		}
		b.WriteString("(" + columns + shared + a + order + limit + ")")
	}
	b.WriteString(order + limit)
	return b.String(), args
}
