package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// CreateCluster stores a cluster and its first CA generation in one
// transaction. It fails with an error wrapping api.ErrConflict when the
// cluster (or the generation's key ref) already exists. c.Generation must
// equal first.Generation.
func (d *DB) CreateCluster(ctx context.Context, c store.Cluster, first store.CAGeneration) error {
	if c.Name == "" || first.KeyRef == "" || c.Generation < 1 || first.Generation != c.Generation ||
		(first.Cluster != "" && first.Cluster != c.Name) {
		return fmt.Errorf("create cluster %q: invalid record (name, key ref, generation %d vs first %d, first's cluster %q)",
			c.Name, c.Generation, first.Generation, first.Cluster)
	}
	if err := checkTimes(c.CreatedAt, first.NotBefore, first.NotAfter, first.CreatedAt, first.RetiredAt, first.TrustedUntil); err != nil {
		return fmt.Errorf("create cluster %q: %w", c.Name, err)
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

// Cluster returns a cluster (api.ErrNotFound when absent).
func (d *DB) Cluster(ctx context.Context, name string) (store.Cluster, error) {
	c := store.Cluster{Name: name}
	err := d.db.QueryRowContext(ctx, `SELECT project, generation, key_algorithm, common_name, validity_days, created_at
		FROM clusters WHERE name = ?`, name).
		Scan(&c.Project, &c.Generation, &c.KeyAlgorithm, &c.CommonName, &c.ValidityDays, tm(&c.CreatedAt))
	if err != nil {
		return store.Cluster{}, d.wrap(err, "read cluster %q", name)
	}
	return c, nil
}

// Generations returns every CA generation of a cluster, newest first. A
// cluster that does not exist has none (and no error).
func (d *DB) Generations(ctx context.Context, cluster string) ([]store.CAGeneration, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT generation, key_ref, certificate_der, key_algorithm,
			not_before, not_after, created_at, retired_at, trusted_until
		FROM ca_generations WHERE cluster = ? ORDER BY generation DESC`, cluster)
	if err != nil {
		return nil, d.wrap(err, "read CA generations of cluster %q", cluster)
	}
	defer rows.Close()
	var gens []store.CAGeneration
	for rows.Next() {
		g := store.CAGeneration{Cluster: cluster}
		if err := rows.Scan(&g.Generation, &g.KeyRef, &g.CertificateDER, &g.KeyAlgorithm,
			tm(&g.NotBefore), tm(&g.NotAfter), tm(&g.CreatedAt), tm(&g.RetiredAt), tm(&g.TrustedUntil)); err != nil {
			return nil, d.wrap(err, "read CA generations of cluster %q", cluster)
		}
		gens = append(gens, g)
	}
	if err := rows.Err(); err != nil {
		return nil, d.wrap(err, "read CA generations of cluster %q", cluster)
	}
	return gens, nil
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
	if next.Cluster != "" && next.Cluster != cluster {
		return fmt.Errorf("rekey cluster %q: next generation belongs to cluster %q", cluster, next.Cluster)
	}
	if next.KeyRef == "" {
		return fmt.Errorf("rekey cluster %q: next generation has no key ref", cluster)
	}
	if next.Generation != expected+1 {
		return fmt.Errorf("rekey cluster %q: next generation %d does not follow expected %d: %w",
			cluster, next.Generation, expected, api.ErrGenerationMismatch)
	}
	if err := checkTimes(now, trustedUntil, next.NotBefore, next.NotAfter, next.CreatedAt, next.RetiredAt, next.TrustedUntil); err != nil {
		return fmt.Errorf("rekey cluster %q: %w", cluster, err)
	}
	nowS, untilS := formatTime(now), formatTime(trustedUntil)
	err := d.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE clusters SET generation = ? WHERE name = ? AND generation = ?",
			next.Generation, cluster, expected)
		if err != nil {
			return d.wrap(err, "move the generation pointer")
		}
		n, err := res.RowsAffected()
		if err != nil {
			return d.wrap(err, "move the generation pointer")
		}
		if n != 1 {
			var active int
			err := tx.QueryRowContext(ctx, "SELECT generation FROM clusters WHERE name = ?", cluster).Scan(&active)
			if err != nil {
				return d.wrap(err, "read the active generation")
			}
			return fmt.Errorf("active generation is %d, not %d: %w", active, expected, api.ErrGenerationMismatch)
		}
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
	})
	if err != nil {
		return fmt.Errorf("rekey cluster %q from generation %d: %w", cluster, expected, err)
	}
	return nil
}

// RecordCertificate adds an issued certificate to the registry. The
// cluster and generation must exist (else api.ErrNotFound); a serial the
// cluster already has gives api.ErrConflict. A certificate recorded for a
// generation that a rekey already retired is stored as revoked when that
// generation leaves the trust bundle, so a sign racing a rekey is never
// left out of the revocation.
func (d *DB) RecordCertificate(ctx context.Context, c store.IssuedCertificate) error {
	if c.Cluster == "" || c.Serial == "" {
		return errors.New("record certificate: cluster and serial are required")
	}
	if err := checkTimes(c.NotBefore, c.NotAfter, c.IssuedAt, c.RevokedAt); err != nil {
		return fmt.Errorf("record certificate %s of cluster %q: %w", c.Serial, c.Cluster, err)
	}
	err := d.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO issued_certificates
		(cluster, serial, generation, subject, profile, user_name, project, not_before, not_after, issued_at, revoked_at, privileged)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,
			CASE WHEN ?11 IS NOT NULL THEN ?11
			ELSE (SELECT trusted_until FROM ca_generations WHERE cluster = ?1 AND generation = ?3) END, ?12)`,
			c.Cluster, c.Serial, c.Generation, c.Subject, c.Profile, c.User, c.Project,
			formatTime(c.NotBefore), formatTime(c.NotAfter), formatTime(c.IssuedAt), formatTime(c.RevokedAt), c.Privileged)
		if err != nil {
			return d.wrap(err, "insert")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record certificate %s of cluster %q generation %d: %w", c.Serial, c.Cluster, c.Generation, err)
	}
	return nil
}

// Certificates lists the certificates issued for a cluster, newest first
// (by IssuedAt, then by the order they were recorded).
func (d *DB) Certificates(ctx context.Context, cluster string) ([]store.IssuedCertificate, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT serial, generation, subject, profile, user_name, project,
			not_before, not_after, issued_at, revoked_at, privileged
		FROM issued_certificates WHERE cluster = ? ORDER BY issued_at DESC, id DESC`, cluster)
	if err != nil {
		return nil, d.wrap(err, "list certificates of cluster %q", cluster)
	}
	defer rows.Close()
	var certs []store.IssuedCertificate
	for rows.Next() {
		c := store.IssuedCertificate{Cluster: cluster}
		if err := rows.Scan(&c.Serial, &c.Generation, &c.Subject, &c.Profile, &c.User, &c.Project,
			tm(&c.NotBefore), tm(&c.NotAfter), tm(&c.IssuedAt), tm(&c.RevokedAt), &c.Privileged); err != nil {
			return nil, d.wrap(err, "list certificates of cluster %q", cluster)
		}
		certs = append(certs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, d.wrap(err, "list certificates of cluster %q", cluster)
	}
	return certs, nil
}

// nonNil returns b, or an empty slice for nil, so a NOT NULL BLOB column
// accepts it.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
