-- 0007: the status filters valid and expired read about a page, however
-- large the registry and however many generations were retired (the same
-- indexes as SQLite's 0007).
--
-- Both hold only for certificates never revoked and for those whose
-- revocation is still ahead (the grace of a rekey). The listing queries the
-- two as separate arms merged in listing order: the never revoked through
-- this partial index, newest first, so that the revoked history of retired
-- generations (every certificate of a rekeyed CA) is never read.
CREATE INDEX issued_certificates_unrevoked_key ON issued_certificates
	(cluster, issued_at DESC NULLS LAST, serial DESC, not_after)
	WHERE revoked_at IS NULL;

-- The revocations still ahead are found by their time, not by walking
-- every revoked certificate.
CREATE INDEX issued_certificates_by_revocation ON issued_certificates (cluster, revoked_at)
	WHERE revoked_at IS NOT NULL;
