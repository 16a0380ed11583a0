-- 0008: a status=expired page reads about a page, however many of the
-- cluster's certificates are still valid (the same change as PostgreSQL's
-- 0008_lapsed.sql).
--
-- The listing is ordered by issue time, but whether a certificate has
-- expired depends on `now` and not_after, and the two orders interleave:
-- walking the never-revoked certificates newest first, an expired page had
-- to skip every certificate still valid. No bound on issued_at derived from
-- not_after is exact (validity periods differ), so the order is kept and
-- expiry is materialised instead: lapsed is set, idempotently and by any
-- instance, on never-revoked rows found expired (store.MarkExpired; a
-- listing by status does it when it finds many unmarked), and the listing
-- splits the never revoked by lapsed:
--   - expired: the lapsed walked newest first (a page), plus the unmarked
--     whose not_after has passed, found by not_after and sorted (few);
--   - valid: the unmarked walked newest first (a page, skipping the few
--     expired ones not marked yet), plus the lapsed whose not_after is still
--     ahead of the listing's `now` (none, unless it lags the marker's clock).
-- Every arm still tests not_after against the listing's `now`: lapsed only
-- says where a row is looked for, never its status, so a listing is exact
-- whatever is marked. A new row is inserted unmarked; existing rows are
-- left unmarked here (the first listing by status marks them).
ALTER TABLE issued_certificates ADD COLUMN lapsed INTEGER NOT NULL DEFAULT 0 CHECK (lapsed IN (0, 1));

DROP INDEX IF EXISTS issued_certificates_unrevoked_key;
CREATE INDEX issued_certificates_live_key ON issued_certificates (cluster, lapsed, issued_at, serial, not_after)
	WHERE revoked_at IS NULL;
CREATE INDEX issued_certificates_live_expiry ON issued_certificates (cluster, lapsed, not_after)
	WHERE revoked_at IS NULL;

-- by_key (0003) held the whole registry in listing order; the unfiltered
-- listing now merges the three indexes that hold it in that order
-- (revoked_key, and live_key for each value of lapsed), so that every sign
-- writes one index less than with 0007.
DROP INDEX IF EXISTS issued_certificates_by_key;
