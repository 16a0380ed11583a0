package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// certColumns are the columns scanCertificate reads, in its order: a
// registry entry with its DER, revocation reason and successor.
const certColumns = `serial, generation, subject, profile, user_name, project,
	not_before, not_after, issued_at, revoked_at, privileged,
	certificate_der, revocation_reason, superseded_by`

// scanCertificate reads one row of certColumns.
func scanCertificate(row pgx.Row, cluster string) (store.IssuedCertificate, error) {
	c := store.IssuedCertificate{Cluster: cluster}
	var reason, next pgtype.Text
	err := row.Scan(&c.Serial, &c.Generation, &c.Subject, &c.Profile, &c.User, &c.Project,
		tm(&c.NotBefore), tm(&c.NotAfter), tm(&c.IssuedAt), tm(&c.RevokedAt), &c.Privileged,
		&c.CertificateDER, &reason, &next)
	c.RevocationReason, c.SupersededBy = reason.String, next.String
	return c, err
}

// Certificate returns the registry entry of serial on cluster, with its
// DER, revocation reason and successor (api.ErrNotFound when absent).
func (d *DB) Certificate(ctx context.Context, cluster, serial string) (store.IssuedCertificate, error) {
	var c store.IssuedCertificate
	err := d.attempt(ctx, func() error {
		var err error
		c, err = scanCertificate(d.pool.QueryRow(ctx,
			"SELECT "+certColumns+" FROM issued_certificates WHERE cluster = $1 AND serial = $2", cluster, serial), cluster)
		return err
	})
	if err != nil {
		return store.IssuedCertificate{}, d.wrap(err, "read certificate %s of cluster %q", serial, cluster)
	}
	return c, nil
}

// RevokeCertificate revokes one certificate explicitly, with its reissue
// chain (the certificates it replaced and those signed in its place, all
// of the same key): their
// RevokedAt becomes r.At (unless it is already earlier) and their reason
// r.Reason. A certificate already revoked explicitly keeps its reason and
// time. It returns the serials of the chain, sorted, and api.ErrNotFound
// when the cluster has no such serial.
func (d *DB) RevokeCertificate(ctx context.Context, r store.Revocation) ([]string, error) {
	return store.RevokeCertificate(ctx, r, d.revokeAlone)
}

// RevokeUser records that r.User is revoked on r.Cluster (a repeat keeps
// the first record) and revokes explicitly, at r.At, every certificate the
// user requested there that is still trusted at r.At, and returns their
// serials, sorted. It first locks the cluster's CA generation rows (FOR NO
// KEY UPDATE), which waits for every RecordCertificate holding one FOR
// SHARE: see RecordCertificate for why no certificate of the user escapes.
// A missing cluster gives api.ErrNotFound.
func (d *DB) RevokeUser(ctx context.Context, r store.Revocation) ([]string, error) {
	return store.RevokeUser(ctx, r, d.revokeAlone)
}

// revokeAlone applies r in a write transaction of its own.
func (d *DB) revokeAlone(ctx context.Context, r store.Revocation) ([]string, error) {
	var serials []string
	err := d.write(ctx, func(tx pgx.Tx) error {
		var err error
		serials, err = d.revoke(ctx, tx, r)
		return err
	})
	return serials, err
}

// revoke applies r in tx and returns the serials it revoked, sorted: for a
// serial, its whole reissue chain, the certificates it replaced and those
// that replaced it (a certificate
// already revoked explicitly is listed, unchanged). It increments the
// cluster's revocation revision when anything changed.
func (d *DB) revoke(ctx context.Context, tx pgx.Tx, r store.Revocation) ([]string, error) {
	at := ts(r.At)
	if r.Serial != "" {
		serials, changed, err := store.RevokeChain(r.Serial, func(serial string) (string, error) {
			var prev string
			err := tx.QueryRow(ctx, "SELECT serial FROM issued_certificates WHERE cluster = $1 AND superseded_by = $2",
				r.Cluster, serial).Scan(&prev)
			if errors.Is(err, pgx.ErrNoRows) {
				return "", nil
			}
			if err != nil {
				return "", d.wrap(err, "read the certificate %s replaced", serial)
			}
			return prev, nil
		}, func(serial string) (string, bool, error) {
			var reason, next pgtype.Text
			err := tx.QueryRow(ctx, "SELECT revocation_reason, superseded_by FROM issued_certificates WHERE cluster = $1 AND serial = $2 FOR UPDATE",
				r.Cluster, serial).Scan(&reason, &next)
			if err != nil {
				return "", false, d.wrap(err, "read certificate %s", serial)
			}
			if reason.Valid {
				return next.String, false, nil
			}
			if _, err := tx.Exec(ctx, `UPDATE issued_certificates SET revocation_reason = $3,
					revoked_at = LEAST(revoked_at, $4)
				WHERE cluster = $1 AND serial = $2`, r.Cluster, serial, r.Reason, at); err != nil {
				return "", false, d.wrap(err, "revoke certificate %s", serial)
			}
			return next.String, true, nil
		})
		if err != nil || !changed {
			return serials, err
		}
		return serials, d.bumpRevision(ctx, tx, r.Cluster)
	}
	// Wait for the certificates being recorded on this cluster; later
	// ones wait for this transaction and then see the revocation.
	if _, err := tx.Exec(ctx, "SELECT 1 FROM ca_generations WHERE cluster = $1 FOR NO KEY UPDATE", r.Cluster); err != nil {
		return nil, d.wrap(err, "lock the CA generations")
	}
	if _, err := tx.Exec(ctx, `INSERT INTO user_revocations (cluster, user_name, reason, revoked_by, revoked_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (cluster, user_name) DO NOTHING`,
		r.Cluster, r.User, r.Reason, r.By, at); err != nil {
		return nil, d.wrap(err, "record the revocation of user %q", r.User)
	}
	rows, err := tx.Query(ctx, `UPDATE issued_certificates SET
			revocation_reason = COALESCE(revocation_reason, $3),
			revoked_at = LEAST(revoked_at, $4)
		WHERE cluster = $1 AND user_name = $2 AND (revoked_at IS NULL OR revoked_at > $4)
		RETURNING serial`, r.Cluster, r.User, r.Reason, at)
	if err != nil {
		return nil, d.wrap(err, "revoke the certificates of user %q", r.User)
	}
	serials, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, d.wrap(err, "revoke the certificates of user %q", r.User)
	}
	if serials == nil {
		serials = []string{}
	}
	slices.Sort(serials)
	return serials, d.bumpRevision(ctx, tx, r.Cluster)
}

// bumpRevision increments the revocation revision of cluster: every CRL
// built before is stale.
func (d *DB) bumpRevision(ctx context.Context, tx pgx.Tx, cluster string) error {
	if _, err := tx.Exec(ctx, `INSERT INTO crl_state (cluster, revision) VALUES ($1, 1)
		ON CONFLICT (cluster) DO UPDATE SET revision = crl_state.revision + 1`, cluster); err != nil {
		return d.wrap(err, "count the revocation")
	}
	return nil
}

// LiftUserRevocation lets user sign on cluster again; its certificates
// stay revoked. api.ErrNotFound when the user is not revoked there.
func (d *DB) LiftUserRevocation(ctx context.Context, cluster, user string) error {
	err := d.write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM user_revocations WHERE cluster = $1 AND user_name = $2", cluster, user)
		if err != nil {
			return d.wrap(err, "delete")
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("user %q is not revoked: %w", user, api.ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("lift the revocation of user %q on cluster %q: %w", user, cluster, err)
	}
	return nil
}

// UserRevocations returns the users revoked on cluster, by user name, at
// most limit of them.
func (d *DB) UserRevocations(ctx context.Context, cluster string, limit int) ([]store.UserRevocation, error) {
	out, err := queryAll(ctx, d, func(row pgx.Row) (store.UserRevocation, error) {
		u := store.UserRevocation{Cluster: cluster}
		err := row.Scan(&u.User, &u.Reason, &u.RevokedBy, tm(&u.RevokedAt))
		return u, err
	}, `SELECT user_name, reason, revoked_by, revoked_at FROM user_revocations
		WHERE cluster = $1 ORDER BY user_name LIMIT $2`, cluster, limit)
	if err != nil {
		return nil, d.wrap(err, "read the revoked users of cluster %q", cluster)
	}
	return out, nil
}

// Users counts the certificates of cluster by requester (user, project)
// and status at now, sorted by user then project (byte order, as SQLite),
// at most limit rows.
func (d *DB) Users(ctx context.Context, cluster string, now time.Time, limit int) ([]store.UserCount, error) {
	if !store.ValidInstant(now) || limit < 1 {
		return nil, fmt.Errorf("count the users of cluster %q: invalid instant %v or limit %d", cluster, now, limit)
	}
	out, err := queryAll(ctx, d, func(row pgx.Row) (store.UserCount, error) {
		var u store.UserCount
		err := row.Scan(&u.User, &u.Project, &u.Valid, &u.Revoked, &u.Expired, tm(&u.LastIssued))
		return u, err
	}, `SELECT user_name, project,
			count(*) FILTER (WHERE (revoked_at IS NULL OR revoked_at > $2) AND not_after > $2)::int,
			count(*) FILTER (WHERE revoked_at <= $2)::int,
			count(*) FILTER (WHERE (revoked_at IS NULL OR revoked_at > $2) AND (not_after IS NULL OR not_after <= $2))::int,
			max(issued_at)
		FROM issued_certificates WHERE cluster = $1
		GROUP BY user_name, project ORDER BY user_name COLLATE "C", project COLLATE "C" LIMIT $3`, cluster, ts(now), limit)
	if err != nil {
		return nil, d.wrap(err, "count the users of cluster %q", cluster)
	}
	return out, nil
}

// queryCertificates runs a query of certColumns and reads every row.
func (d *DB) queryCertificates(ctx context.Context, cluster, what, query string, args ...any) ([]store.IssuedCertificate, error) {
	out, err := queryAll(ctx, d, func(row pgx.Row) (store.IssuedCertificate, error) {
		return scanCertificate(row, cluster)
	}, query, args...)
	if err != nil {
		return nil, d.wrap(err, "read the %s of cluster %q", what, cluster)
	}
	return out, nil
}

// CRLEntries returns the certificates of generation gen of cluster that
// were revoked explicitly and have not expired at now, by serial: what
// the generation's CRL lists.
func (d *DB) CRLEntries(ctx context.Context, cluster string, gen int, now time.Time) ([]store.IssuedCertificate, error) {
	if !store.ValidInstant(now) {
		return nil, fmt.Errorf("read the revoked certificates of cluster %q: invalid instant %v", cluster, now)
	}
	return d.queryCertificates(ctx, cluster, "revoked certificates",
		"SELECT "+certColumns+` FROM issued_certificates
		WHERE cluster = $1 AND generation = $2 AND revocation_reason IS NOT NULL AND not_after > $3
		ORDER BY serial`, cluster, gen, ts(now))
}

// CRL returns the cached CRL of generation gen of cluster (DER nil when
// none was stored) and the cluster's current revocation revision, in one
// read.
func (d *DB) CRL(ctx context.Context, cluster string, gen int) (store.CRL, int64, error) {
	c := store.CRL{Cluster: cluster, Generation: gen}
	var revision, number, built pgtype.Int8
	err := d.queryRow(ctx, `SELECT s.revision, c.number, c.revision, c.this_update, c.next_update, c.der
		FROM (SELECT $1::text AS cluster) k
		LEFT JOIN crl_state s ON s.cluster = k.cluster
		LEFT JOIN crls c ON c.cluster = k.cluster AND c.generation = $2`, []any{cluster, gen},
		&revision, &number, &built, tm(&c.ThisUpdate), tm(&c.NextUpdate), &c.DER)
	if err != nil {
		return store.CRL{}, 0, d.wrap(err, "read the CRL of cluster %q generation %d", cluster, gen)
	}
	c.Number, c.Revision = number.Int64, built.Int64
	return c, revision.Int64, nil
}

// NextCRLNumber allocates the next CRL number of cluster: 1, 2, 3, …
// across every generation and every instance (the row lock of the upsert
// orders concurrent callers).
func (d *DB) NextCRLNumber(ctx context.Context, cluster string) (int64, error) {
	var n int64
	err := d.write(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO crl_state (cluster, last_number) VALUES ($1, 1)
			ON CONFLICT (cluster) DO UPDATE SET last_number = crl_state.last_number + 1
			RETURNING last_number`, cluster).Scan(&n)
		if err != nil {
			return d.wrap(err, "allocate")
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("allocate a CRL number for cluster %q: %w", cluster, err)
	}
	return n, nil
}

// PutCRL caches c as the CRL of its generation unless one with a higher
// number is already stored (another instance built a newer one).
func (d *DB) PutCRL(ctx context.Context, c store.CRL) error {
	if err := store.CheckCRL(c); err != nil {
		return err
	}
	err := d.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO crls (cluster, generation, number, revision, this_update, next_update, der)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (cluster, generation) DO UPDATE SET number = excluded.number, revision = excluded.revision,
				this_update = excluded.this_update, next_update = excluded.next_update, der = excluded.der
			WHERE excluded.number > crls.number`,
			c.Cluster, c.Generation, c.Number, c.Revision, ts(c.ThisUpdate), ts(c.NextUpdate), c.DER)
		if err != nil {
			return d.wrap(err, "insert")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store CRL %d of cluster %q generation %d: %w", c.Number, c.Cluster, c.Generation, err)
	}
	return nil
}

// candidatesWhere selects, with $1 the cluster and $2 the instant, the
// certificates a reissue signs again: valid and unrevoked at the instant,
// not superseded, of the active generation or one still trusted.
const candidatesWhere = ` FROM issued_certificates
	WHERE cluster = $1 AND superseded_by IS NULL AND (revoked_at IS NULL OR revoked_at > $2) AND not_after > $2
	AND generation IN (SELECT generation FROM ca_generations
		WHERE cluster = $1 AND (retired_at IS NULL OR trusted_until > $2))`

// ReissueCandidates returns, by serial, the certificates of cluster that a
// reissue at now would sign again (see store.Reissue.Candidates), with
// their DER.
func (d *DB) ReissueCandidates(ctx context.Context, cluster string, now time.Time) ([]store.IssuedCertificate, error) {
	if !store.ValidInstant(now) {
		return nil, fmt.Errorf("read the certificates to re-issue of cluster %q: invalid instant %v", cluster, now)
	}
	return d.queryCertificates(ctx, cluster, "certificates to re-issue",
		"SELECT "+certColumns+candidatesWhere+" ORDER BY serial", cluster, ts(now))
}

// Reissue applies r in one transaction: the compare-and-swap of the
// generation (api.ErrGenerationMismatch), a lock on the cluster's CA
// generation rows (which waits for the certificates being recorded, and
// makes every later record wait for the commit), the revocation
// (api.ErrNotFound for an unknown serial), the certificates to re-issue
// read again (store.ReissuedCertificates: the re-issues of candidates revoked
// or expired meanwhile are dropped, the certificates recorded since the
// caller read them are signed by resign; without resign they give an
// error wrapping store.ErrCandidatesChanged and api.ErrConflict), the
// rekey as Rekey does it, the re-issued certificates and their
// superseded_by links. That read comes after the lock, in a new snapshot
// (READ COMMITTED), so every candidate at the commit is re-issued.
func (d *DB) Reissue(ctx context.Context, r store.Reissue, resign store.ResignFunc) (store.ReissueResult, error) {
	if err := store.CheckReissue(r); err != nil {
		return store.ReissueResult{}, err
	}
	var res store.ReissueResult
	err := d.write(ctx, func(tx pgx.Tx) error {
		res = store.ReissueResult{}
		if err := d.move(ctx, tx, clusterGeneration, r.Cluster, r.Expected, r.Next.Generation); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT 1 FROM ca_generations WHERE cluster = $1 FOR NO KEY UPDATE", r.Cluster); err != nil {
			return d.wrap(err, "lock the CA generations")
		}
		var err error
		if res.Revoked, err = d.revoke(ctx, tx, r.Revocation); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT serial"+candidatesWhere, r.Cluster, ts(r.Now))
		if err != nil {
			return d.wrap(err, "read the certificates to re-issue")
		}
		current, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return d.wrap(err, "read the certificates to re-issue")
		}
		res.Certificates, err = store.ReissuedCertificates(ctx, r, current, func(added []string) ([]store.IssuedCertificate, error) {
			return d.readCertificates(ctx, tx, r.Cluster, added)
		}, resign)
		if err != nil {
			return err
		}
		if err := d.retire(ctx, tx, r.Cluster, r.Expected, r.Next, r.Now, r.TrustedUntil); err != nil {
			return err
		}
		if len(res.Certificates) == 0 {
			return nil
		}
		b := &pgx.Batch{}
		for _, c := range res.Certificates {
			c.Cluster, c.RevokedAt = r.Cluster, time.Time{}
			b.Queue(insertCertificateSQL, certificateArgs(c, nil)...)
			b.Queue("UPDATE issued_certificates SET superseded_by = $1 WHERE cluster = $2 AND serial = $3", c.Serial, r.Cluster, c.Supersedes)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return d.wrap(err, "record the re-issued certificates")
		}
		return nil
	})
	if err != nil {
		return store.ReissueResult{}, fmt.Errorf("reissue on cluster %q from generation %d: %w", r.Cluster, r.Expected, err)
	}
	return res, nil
}

// readCertificates reads, in tx, the certificates of cluster with the
// given serials, with their DER, by serial.
func (d *DB) readCertificates(ctx context.Context, tx pgx.Tx, cluster string, serials []string) ([]store.IssuedCertificate, error) {
	rows, err := tx.Query(ctx, "SELECT "+certColumns+" FROM issued_certificates WHERE cluster = $1 AND serial = ANY($2) ORDER BY serial",
		cluster, serials)
	if err != nil {
		return nil, d.wrap(err, "read the certificates to re-issue")
	}
	certs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.IssuedCertificate, error) {
		return scanCertificate(row, cluster)
	})
	if err != nil {
		return nil, d.wrap(err, "read the certificates to re-issue")
	}
	return certs, nil
}
