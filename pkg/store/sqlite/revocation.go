package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// certColumns are the columns scanCertificate reads, in its order: a
// registry entry with its DER, revocation reason and successor.
const certColumns = `serial, generation, subject, profile, user_name, project,
	not_before, not_after, issued_at, revoked_at, privileged,
	certificate_der, revocation_reason, superseded_by`

// scanCertificate reads one row of certColumns.
func scanCertificate(row scanner, cluster string) (store.IssuedCertificate, error) {
	c := store.IssuedCertificate{Cluster: cluster}
	var reason, next sql.NullString
	err := row.Scan(&c.Serial, &c.Generation, &c.Subject, &c.Profile, &c.User, &c.Project,
		tm(&c.NotBefore), tm(&c.NotAfter), tm(&c.IssuedAt), tm(&c.RevokedAt), &c.Privileged,
		&c.CertificateDER, &reason, &next)
	c.RevocationReason, c.SupersededBy = reason.String, next.String
	return c, err
}

// Certificate returns the registry entry of serial on cluster, with its
// DER, revocation reason and successor (api.ErrNotFound when absent).
func (d *DB) Certificate(ctx context.Context, cluster, serial string) (store.IssuedCertificate, error) {
	c, err := scanCertificate(d.db.QueryRowContext(ctx,
		"SELECT "+certColumns+" FROM issued_certificates WHERE cluster = ? AND serial = ?", cluster, serial), cluster)
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
// user requested there that is still trusted at r.At. It returns their
// serials, sorted. From its commit on, RecordCertificate refuses the
// user's certificates (api.ErrUserRevoked): both run under the write lock,
// so a sign racing the revocation is either recorded first, and revoked
// here, or refused. A missing cluster gives api.ErrNotFound.
func (d *DB) RevokeUser(ctx context.Context, r store.Revocation) ([]string, error) {
	return store.RevokeUser(ctx, r, d.revokeAlone)
}

// revokeAlone applies r in a write transaction of its own.
func (d *DB) revokeAlone(ctx context.Context, r store.Revocation) ([]string, error) {
	var serials []string
	err := d.write(ctx, func(tx *sql.Tx) error {
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
func (d *DB) revoke(ctx context.Context, tx *sql.Tx, r store.Revocation) ([]string, error) {
	at := formatTime(r.At)
	if r.Serial != "" {
		serials, changed, err := store.RevokeChain(r.Serial, func(serial string) (string, error) {
			var prev string
			err := tx.QueryRowContext(ctx, "SELECT serial FROM issued_certificates WHERE cluster = ? AND superseded_by = ?",
				r.Cluster, serial).Scan(&prev)
			if errors.Is(err, sql.ErrNoRows) {
				return "", nil
			}
			if err != nil {
				return "", d.wrap(err, "read the certificate %s replaced", serial)
			}
			return prev, nil
		}, func(serial string) (string, bool, error) {
			var reason, next sql.NullString
			err := tx.QueryRowContext(ctx, "SELECT revocation_reason, superseded_by FROM issued_certificates WHERE cluster = ? AND serial = ?",
				r.Cluster, serial).Scan(&reason, &next)
			if err != nil {
				return "", false, d.wrap(err, "read certificate %s", serial)
			}
			if reason.Valid {
				return next.String, false, nil
			}
			if _, err := tx.ExecContext(ctx, `UPDATE issued_certificates SET revocation_reason = ?3,
					revoked_at = CASE WHEN revoked_at IS NOT NULL AND revoked_at <= ?4 THEN revoked_at ELSE ?4 END
				WHERE cluster = ?1 AND serial = ?2`, r.Cluster, serial, r.Reason, at); err != nil {
				return "", false, d.wrap(err, "revoke certificate %s", serial)
			}
			return next.String, true, nil
		})
		if err != nil || !changed {
			return serials, err
		}
		return serials, d.bumpRevision(ctx, tx, r.Cluster)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO user_revocations (cluster, user_name, reason, revoked_by, revoked_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (cluster, user_name) DO NOTHING`,
		r.Cluster, r.User, r.Reason, r.By, at); err != nil {
		return nil, d.wrap(err, "record the revocation of user %q", r.User)
	}
	rows, err := tx.QueryContext(ctx, `UPDATE issued_certificates SET
			revocation_reason = COALESCE(revocation_reason, ?3),
			revoked_at = CASE WHEN revoked_at IS NOT NULL AND revoked_at <= ?4 THEN revoked_at ELSE ?4 END
		WHERE cluster = ?1 AND user_name = ?2 AND (revoked_at IS NULL OR revoked_at > ?4)
		RETURNING serial`, r.Cluster, r.User, r.Reason, at)
	if err != nil {
		return nil, d.wrap(err, "revoke the certificates of user %q", r.User)
	}
	serials, err := scanStrings(rows)
	if err != nil {
		return nil, d.wrap(err, "revoke the certificates of user %q", r.User)
	}
	return serials, d.bumpRevision(ctx, tx, r.Cluster)
}

// scanStrings reads a one-column result of text, sorted, and closes rows.
func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}

// bumpRevision increments the revocation revision of cluster: every CRL
// built before is stale.
func (d *DB) bumpRevision(ctx context.Context, tx *sql.Tx, cluster string) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO crl_state (cluster, revision) VALUES (?, 1)
		ON CONFLICT (cluster) DO UPDATE SET revision = crl_state.revision + 1`, cluster); err != nil {
		return d.wrap(err, "count the revocation")
	}
	return nil
}

// LiftUserRevocation lets user sign on cluster again; its certificates
// stay revoked. api.ErrNotFound when the user is not revoked there.
func (d *DB) LiftUserRevocation(ctx context.Context, cluster, user string) error {
	err := d.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM user_revocations WHERE cluster = ? AND user_name = ?", cluster, user)
		if err != nil {
			return d.wrap(err, "delete")
		}
		if n, err := res.RowsAffected(); err != nil {
			return d.wrap(err, "delete")
		} else if n == 0 {
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
	out, err := queryAll(ctx, d, func(row scanner) (store.UserRevocation, error) {
		u := store.UserRevocation{Cluster: cluster}
		err := row.Scan(&u.User, &u.Reason, &u.RevokedBy, tm(&u.RevokedAt))
		return u, err
	}, `SELECT user_name, reason, revoked_by, revoked_at FROM user_revocations
		WHERE cluster = ? ORDER BY user_name LIMIT ?`, cluster, limit)
	if err != nil {
		return nil, d.wrap(err, "read the revoked users of cluster %q", cluster)
	}
	return out, nil
}

// Users counts the certificates of cluster by requester (user, project)
// and status at now, sorted by user then project, at most limit rows.
func (d *DB) Users(ctx context.Context, cluster string, now time.Time, limit int) ([]store.UserCount, error) {
	if !store.ValidInstant(now) || limit < 1 {
		return nil, fmt.Errorf("count the users of cluster %q: invalid instant %v or limit %d", cluster, now, limit)
	}
	out, err := queryAll(ctx, d, func(row scanner) (store.UserCount, error) {
		var u store.UserCount
		err := row.Scan(&u.User, &u.Project, &u.Valid, &u.Revoked, &u.Expired, tm(&u.LastIssued))
		return u, err
	}, `SELECT user_name, project,
			SUM(CASE WHEN (revoked_at IS NULL OR revoked_at > ?2) AND not_after > ?2 THEN 1 ELSE 0 END),
			SUM(CASE WHEN revoked_at <= ?2 THEN 1 ELSE 0 END),
			SUM(CASE WHEN (revoked_at IS NULL OR revoked_at > ?2) AND (not_after IS NULL OR not_after <= ?2) THEN 1 ELSE 0 END),
			MAX(issued_at)
		FROM issued_certificates WHERE cluster = ?1
		GROUP BY user_name, project ORDER BY user_name, project LIMIT ?3`, cluster, formatTime(now), limit)
	if err != nil {
		return nil, d.wrap(err, "count the users of cluster %q", cluster)
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
		WHERE cluster = ? AND generation = ? AND revocation_reason IS NOT NULL AND not_after > ?
		ORDER BY serial`, cluster, gen, formatTime(now))
}

// queryCertificates runs a query of certColumns and reads every row.
func (d *DB) queryCertificates(ctx context.Context, cluster, what, query string, args ...any) ([]store.IssuedCertificate, error) {
	out, err := queryAll(ctx, d, func(row scanner) (store.IssuedCertificate, error) {
		return scanCertificate(row, cluster)
	}, query, args...)
	if err != nil {
		return nil, d.wrap(err, "read the %s of cluster %q", what, cluster)
	}
	return out, nil
}

// CRL returns the cached CRL of generation gen of cluster (DER nil when
// none was stored) and the cluster's current revocation revision, in one
// read.
func (d *DB) CRL(ctx context.Context, cluster string, gen int) (store.CRL, int64, error) {
	c := store.CRL{Cluster: cluster, Generation: gen}
	var revision, number, built sql.NullInt64
	err := d.db.QueryRowContext(ctx, `SELECT s.revision, c.number, c.revision, c.this_update, c.next_update, c.der
		FROM (SELECT ?1 AS cluster) k
		LEFT JOIN crl_state s ON s.cluster = k.cluster
		LEFT JOIN crls c ON c.cluster = k.cluster AND c.generation = ?2`, cluster, gen).
		Scan(&revision, &number, &built, tm(&c.ThisUpdate), tm(&c.NextUpdate), &c.DER)
	if err != nil {
		return store.CRL{}, 0, d.wrap(err, "read the CRL of cluster %q generation %d", cluster, gen)
	}
	c.Number, c.Revision = number.Int64, built.Int64
	return c, revision.Int64, nil
}

// NextCRLNumber allocates the next CRL number of cluster: 1, 2, 3, …
// across every generation and every instance.
func (d *DB) NextCRLNumber(ctx context.Context, cluster string) (int64, error) {
	var n int64
	err := d.write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `INSERT INTO crl_state (cluster, last_number) VALUES (?, 1)
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
	err := d.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO crls (cluster, generation, number, revision, this_update, next_update, der)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (cluster, generation) DO UPDATE SET number = excluded.number, revision = excluded.revision,
				this_update = excluded.this_update, next_update = excluded.next_update, der = excluded.der
			WHERE excluded.number > crls.number`,
			c.Cluster, c.Generation, c.Number, c.Revision, formatTime(c.ThisUpdate), formatTime(c.NextUpdate), c.DER)
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

// candidatesWhere selects, with ?1 the cluster and ?2 the instant, the
// certificates a reissue signs again: valid and unrevoked at the instant,
// not superseded, of the active generation or one still trusted.
const candidatesWhere = ` FROM issued_certificates
	WHERE cluster = ?1 AND superseded_by IS NULL AND (revoked_at IS NULL OR revoked_at > ?2) AND not_after > ?2
	AND generation IN (SELECT generation FROM ca_generations
		WHERE cluster = ?1 AND (retired_at IS NULL OR trusted_until > ?2))`

// ReissueCandidates returns, by serial, the certificates of cluster that a
// reissue at now would sign again (see store.Reissue.Candidates), with
// their DER.
func (d *DB) ReissueCandidates(ctx context.Context, cluster string, now time.Time) ([]store.IssuedCertificate, error) {
	if !store.ValidInstant(now) {
		return nil, fmt.Errorf("read the certificates to re-issue of cluster %q: invalid instant %v", cluster, now)
	}
	return d.queryCertificates(ctx, cluster, "certificates to re-issue",
		"SELECT "+certColumns+candidatesWhere+" ORDER BY serial", cluster, formatTime(now))
}

// Reissue applies r in one transaction: the compare-and-swap of the
// generation (api.ErrGenerationMismatch), the revocation (api.ErrNotFound
// for an unknown serial), the certificates to re-issue read again
// (store.ReissuedCertificates: the re-issues of candidates revoked or expired
// meanwhile are dropped, the certificates recorded since the caller read
// them are signed by resign; without resign they give an error wrapping
// store.ErrCandidatesChanged and api.ErrConflict), the rekey as Rekey
// does it, the re-issued certificates and their superseded_by links.
// The transaction holds the write lock (BEGIN IMMEDIATE), so no
// certificate is recorded between that read and the commit: every
// candidate at the commit is re-issued.
func (d *DB) Reissue(ctx context.Context, r store.Reissue, resign store.ResignFunc) (store.ReissueResult, error) {
	if err := store.CheckReissue(r); err != nil {
		return store.ReissueResult{}, err
	}
	var res store.ReissueResult
	err := d.write(ctx, func(tx *sql.Tx) error {
		res = store.ReissueResult{}
		if err := d.move(ctx, tx, clusterGeneration, r.Cluster, r.Expected, r.Next.Generation); err != nil {
			return err
		}
		var err error
		if res.Revoked, err = d.revoke(ctx, tx, r.Revocation); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, "SELECT serial"+candidatesWhere, r.Cluster, formatTime(r.Now))
		if err != nil {
			return d.wrap(err, "read the certificates to re-issue")
		}
		current, err := scanStrings(rows)
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
		// The sign's statement, prepared once (hotStatements), not
		// parsed again for every re-issue.
		ins := tx.StmtContext(ctx, d.stmts.insertCertificate)
		defer ins.Close()
		link, err := tx.PrepareContext(ctx, "UPDATE issued_certificates SET superseded_by = ? WHERE cluster = ? AND serial = ?")
		if err != nil {
			return d.wrap(err, "prepare")
		}
		defer link.Close()
		for _, c := range res.Certificates {
			c.Cluster, c.RevokedAt = r.Cluster, time.Time{}
			if err := insertCertificate(ctx, d, tx, ins, c); err != nil {
				return fmt.Errorf("record the re-issue of %s: %w", c.Supersedes, err)
			}
			if _, err := link.ExecContext(ctx, c.Serial, r.Cluster, c.Supersedes); err != nil {
				return d.wrap(err, "link %s to %s", c.Supersedes, c.Serial)
			}
		}
		return nil
	})
	if err != nil {
		return store.ReissueResult{}, fmt.Errorf("reissue on cluster %q from generation %d: %w", r.Cluster, r.Expected, err)
	}
	return res, nil
}

// readCertificates reads, in tx, the certificates of cluster with the
// given serials, with their DER.
func (d *DB) readCertificates(ctx context.Context, tx *sql.Tx, cluster string, serials []string) ([]store.IssuedCertificate, error) {
	get, err := tx.PrepareContext(ctx, "SELECT "+certColumns+" FROM issued_certificates WHERE cluster = ? AND serial = ?")
	if err != nil {
		return nil, d.wrap(err, "prepare")
	}
	defer get.Close()
	certs := make([]store.IssuedCertificate, 0, len(serials))
	for _, serial := range serials {
		c, err := scanCertificate(get.QueryRowContext(ctx, cluster, serial), cluster)
		if err != nil {
			return nil, d.wrap(err, "read certificate %s to re-issue", serial)
		}
		certs = append(certs, c)
	}
	return certs, nil
}
