-- 0005: per-user revocation, CRLs and reissue (issue 12).
--
-- issued_certificates keeps each certificate's DER from now on (NULL for
-- the entries recorded before: those cannot be re-issued), the reason of
-- an explicit revocation (NULL when the certificate was only retired with
-- its CA) and the serial a reissue signed in its place.
--
-- user_revocations: users whose signs on a cluster are refused until an
-- admin lifts the revocation; RecordCertificate refuses them in the same
-- transaction that would record the certificate.
--
-- crl_state: per cluster, the revision of its revocations (every explicit
-- revocation increments it, so a CRL built at an older revision is stale)
-- and the last CRL number issued (the number increases across every CRL
-- of the cluster, whatever the generation).
--
-- crls: the latest CRL of each CA generation, shared by every instance.

ALTER TABLE issued_certificates ADD COLUMN certificate_der BLOB;
ALTER TABLE issued_certificates ADD COLUMN revocation_reason TEXT;
ALTER TABLE issued_certificates ADD COLUMN superseded_by TEXT;

CREATE INDEX issued_certificates_revoked_explicitly ON issued_certificates (cluster, generation)
	WHERE revocation_reason IS NOT NULL;

-- A revocation by serial walks the reissue chain both ways.
CREATE INDEX issued_certificates_by_successor ON issued_certificates (cluster, superseded_by)
	WHERE superseded_by IS NOT NULL;

CREATE TABLE user_revocations (
	cluster    TEXT NOT NULL REFERENCES clusters (name),
	user_name  TEXT NOT NULL,
	reason     TEXT NOT NULL,
	revoked_by TEXT NOT NULL,
	revoked_at TEXT,
	PRIMARY KEY (cluster, user_name)
) STRICT;

CREATE TABLE crl_state (
	cluster     TEXT    NOT NULL PRIMARY KEY REFERENCES clusters (name),
	revision    INTEGER NOT NULL DEFAULT 0,
	last_number INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE crls (
	cluster     TEXT    NOT NULL,
	generation  INTEGER NOT NULL,
	number      INTEGER NOT NULL,
	revision    INTEGER NOT NULL,
	this_update TEXT,
	next_update TEXT,
	der         BLOB    NOT NULL,
	PRIMARY KEY (cluster, generation),
	FOREIGN KEY (cluster, generation) REFERENCES ca_generations (cluster, generation)
) STRICT;
