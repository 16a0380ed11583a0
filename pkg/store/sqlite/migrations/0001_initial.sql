-- 0001: clusters and their CA generations, the issued-certificate registry,
-- sealed key blobs of software custody, and KEKs with their versions.
--
-- Times are TEXT in UTC with a fixed width, 2006-01-02T15:04:05.000000000Z,
-- so that comparing the text compares the instants; NULL is the zero time.

CREATE TABLE clusters (
	name          TEXT    NOT NULL PRIMARY KEY,
	project       TEXT    NOT NULL,
	generation    INTEGER NOT NULL CHECK (generation >= 1),
	key_algorithm TEXT    NOT NULL,
	common_name   TEXT    NOT NULL,
	validity_days INTEGER NOT NULL,
	created_at    TEXT
) STRICT;

CREATE TABLE ca_generations (
	cluster         TEXT    NOT NULL REFERENCES clusters (name),
	generation      INTEGER NOT NULL CHECK (generation >= 1),
	key_ref         TEXT    NOT NULL UNIQUE,
	certificate_der BLOB    NOT NULL,
	key_algorithm   TEXT    NOT NULL,
	not_before      TEXT,
	not_after       TEXT,
	created_at      TEXT,
	retired_at      TEXT,
	trusted_until   TEXT,
	PRIMARY KEY (cluster, generation)
) STRICT;

CREATE TABLE issued_certificates (
	id          INTEGER NOT NULL PRIMARY KEY,
	cluster     TEXT    NOT NULL,
	serial      TEXT    NOT NULL,
	generation  INTEGER NOT NULL,
	subject     TEXT    NOT NULL,
	profile     TEXT    NOT NULL,
	user_name   TEXT    NOT NULL,
	project     TEXT    NOT NULL,
	not_before  TEXT,
	not_after   TEXT,
	issued_at   TEXT,
	revoked_at  TEXT,
	UNIQUE (cluster, serial),
	FOREIGN KEY (cluster, generation) REFERENCES ca_generations (cluster, generation)
) STRICT;

CREATE INDEX issued_certificates_by_generation ON issued_certificates (cluster, generation);
CREATE INDEX issued_certificates_by_issue ON issued_certificates (cluster, issued_at);

CREATE TABLE blobs (
	ref        TEXT NOT NULL PRIMARY KEY,
	blob       BLOB NOT NULL,
	created_at TEXT NOT NULL
) STRICT;

CREATE TABLE keks (
	name           TEXT    NOT NULL PRIMARY KEY,
	project        TEXT    NOT NULL,
	active_version INTEGER NOT NULL CHECK (active_version >= 1),
	created_at     TEXT
) STRICT;

CREATE TABLE kek_versions (
	name       TEXT    NOT NULL REFERENCES keks (name),
	version    INTEGER NOT NULL CHECK (version >= 1),
	key_ref    TEXT    NOT NULL UNIQUE,
	key_id     TEXT    NOT NULL UNIQUE,
	created_at TEXT,
	PRIMARY KEY (name, version)
) STRICT;
