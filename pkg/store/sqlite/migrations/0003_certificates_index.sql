-- 0003: indexes for the paged, filtered registry listing and for the
-- generation reads of a sign and a CA show, so that neither reads a
-- cluster's whole history.
--
-- The listing runs newest first by (issued_at, serial), a keyset that every
-- page resumes from; each filter has an index that starts with the cluster,
-- then the filtered column, then the keyset, so a page reads about as many
-- rows as it returns. A serial is found through UNIQUE (cluster, serial).

-- Replaces issued_certificates_by_issue (cluster, issued_at): same prefix,
-- plus the serial that breaks ties between equal issue times, plus the two
-- times the status filters compare, so that a status filter that matches
-- few entries walks this index alone and never reads the rows it skips.
DROP INDEX IF EXISTS issued_certificates_by_issue;
CREATE INDEX issued_certificates_by_key ON issued_certificates (cluster, issued_at, serial, not_after, revoked_at);

-- Replaces issued_certificates_by_generation (cluster, generation): still
-- serves the revocation of a rekey (cluster, generation <= n), and pages
-- one generation in listing order.
DROP INDEX IF EXISTS issued_certificates_by_generation;
CREATE INDEX issued_certificates_by_generation_key ON issued_certificates (cluster, generation, issued_at, serial);

CREATE INDEX issued_certificates_by_user_key ON issued_certificates (cluster, user_name, issued_at, serial);

-- Only certificates with a revocation time can be revoked: the status
-- filter "revoked" walks these alone.
CREATE INDEX issued_certificates_revoked_key ON issued_certificates (cluster, issued_at, serial)
	WHERE revoked_at IS NOT NULL;

-- A CA show reads the active generation by primary key and the retired
-- ones still trusted through this index, never the whole history.
CREATE INDEX ca_generations_by_trust ON ca_generations (cluster, trusted_until);
