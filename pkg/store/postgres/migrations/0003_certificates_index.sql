-- 0003: indexes for the paged, filtered registry listing and for the
-- generation reads of a sign and a CA show, so that neither reads a
-- cluster's whole history. The same indexes as SQLite's
-- 0003_certificates_index.sql, in the listing's order.
--
-- The listing runs newest first by (issued_at, serial), a keyset that every
-- page resumes from; each filter has an index that starts with the cluster,
-- then the filtered column, then the keyset, so a page reads about as many
-- rows as it returns. A serial is found through UNIQUE (cluster, serial).
--
-- Two differences from SQLite keep both stores in the same order:
--   - serials compare byte by byte (COLLATE "C"), as in SQLite, not by the
--     database's collation;
--   - the listing orders issued_at DESC NULLS LAST (SQLite sorts NULL
--     first, so last when descending; PostgreSQL the opposite), and the
--     indexes are declared in that order so a page is read, not sorted.

ALTER TABLE issued_certificates ALTER COLUMN serial TYPE text COLLATE "C";

DROP INDEX IF EXISTS issued_certificates_by_issue;
CREATE INDEX issued_certificates_by_key ON issued_certificates
	(cluster, issued_at DESC NULLS LAST, serial DESC, not_after, revoked_at);

DROP INDEX IF EXISTS issued_certificates_by_generation;
CREATE INDEX issued_certificates_by_generation_key ON issued_certificates
	(cluster, generation, issued_at DESC NULLS LAST, serial DESC);

CREATE INDEX issued_certificates_by_user_key ON issued_certificates
	(cluster, user_name, issued_at DESC NULLS LAST, serial DESC);

CREATE INDEX issued_certificates_revoked_key ON issued_certificates
	(cluster, issued_at DESC NULLS LAST, serial DESC)
	WHERE revoked_at IS NOT NULL;

CREATE INDEX ca_generations_by_trust ON ca_generations (cluster, trusted_until);
