-- 0008: a status=expired page reads about a page, however many of the
-- cluster's certificates are still valid (the change of SQLite's
-- 0008_lapsed.sql, which explains it: lapsed marks the never-revoked rows
-- found expired, and a listing by status walks, newest first, the rows
-- whose mark agrees with the status it lists and finds the few others by
-- not_after).
--
-- Here the few others are found through expression indexes, and the
-- expressions are what the listing tests: PostgreSQL keeps statistics on
-- the expression of a (non-partial) index, so the planner knows that the
-- rows whose mark disagrees with their status are few. It would otherwise
-- multiply the fractions of lapsed and of expired rows, expect a quarter
-- of the table, and scan it. Adding a column with a constant default
-- rewrites nothing; existing rows are left unmarked (the first listing by
-- status marks them, then analyzes the table).
ALTER TABLE issued_certificates ADD COLUMN lapsed boolean NOT NULL DEFAULT false;

DROP INDEX IF EXISTS issued_certificates_unrevoked_key;
CREATE INDEX issued_certificates_live_key ON issued_certificates
	(cluster, lapsed, issued_at DESC NULLS LAST, serial DESC, not_after)
	WHERE revoked_at IS NULL;

-- Never revoked, not marked, and expired at the listing's `now` when the
-- expression is <= now (a NULL not_after is the zero time, long past).
CREATE INDEX issued_certificates_unmarked_expiry ON issued_certificates
	(cluster, (CASE WHEN revoked_at IS NULL AND NOT lapsed THEN coalesce(not_after, '-infinity'::timestamptz) END));

-- Never revoked, marked, and still valid at the listing's `now` when the
-- expression is > now (none, unless that now lags the marker's clock).
CREATE INDEX issued_certificates_lapsed_expiry ON issued_certificates
	(cluster, (CASE WHEN revoked_at IS NULL AND lapsed THEN not_after END));

-- SQLite's 0008 drops by_key and merges three indexes for the unfiltered
-- listing; here by_key stays: planning the merge of three arms costs more
-- than the sign saves by writing one index less.
