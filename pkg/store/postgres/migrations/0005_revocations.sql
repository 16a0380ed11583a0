-- 0005: per-user revocation, CRLs and reissue (issue 12); the same tables
-- and columns as SQLite's 0005_revocations.sql, times in timestamptz.
--
-- issued_certificates keeps each certificate's DER from now on (NULL for
-- the entries recorded before: those cannot be re-issued), the reason of
-- an explicit revocation and the serial a reissue signed in its place.
-- user_revocations: users whose signs on a cluster are refused until an
-- admin lifts the revocation. crl_state: per cluster, the revision of its
-- revocations and the last CRL number issued. crls: the latest CRL of each
-- CA generation, shared by every instance.

ALTER TABLE issued_certificates ADD COLUMN certificate_der bytea;
ALTER TABLE issued_certificates ADD COLUMN revocation_reason text;
ALTER TABLE issued_certificates ADD COLUMN superseded_by text COLLATE "C";

CREATE INDEX issued_certificates_revoked_explicitly ON issued_certificates (cluster, generation)
	WHERE revocation_reason IS NOT NULL;

-- A revocation by serial walks the reissue chain both ways.
CREATE INDEX issued_certificates_by_successor ON issued_certificates (cluster, superseded_by)
	WHERE superseded_by IS NOT NULL;

CREATE TABLE user_revocations (
	cluster    text NOT NULL REFERENCES clusters (name),
	user_name  text COLLATE "C" NOT NULL,
	reason     text NOT NULL,
	revoked_by text NOT NULL,
	revoked_at timestamptz,
	PRIMARY KEY (cluster, user_name)
);

CREATE TABLE crl_state (
	cluster     text   NOT NULL PRIMARY KEY REFERENCES clusters (name),
	revision    bigint NOT NULL DEFAULT 0,
	last_number bigint NOT NULL DEFAULT 0
);

CREATE TABLE crls (
	cluster     text    NOT NULL,
	generation  integer NOT NULL,
	number      bigint  NOT NULL,
	revision    bigint  NOT NULL,
	this_update timestamptz,
	next_update timestamptz,
	der         bytea   NOT NULL,
	PRIMARY KEY (cluster, generation),
	FOREIGN KEY (cluster, generation) REFERENCES ca_generations (cluster, generation)
);
