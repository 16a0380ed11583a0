-- 0001: clusters and their CA generations, the issued-certificate registry,
-- sealed key blobs of software custody, and KEKs with their versions.
--
-- The same tables, columns and constraints as SQLite's 0001_initial.sql,
-- in PostgreSQL's types: times are timestamptz (NULL is the zero time),
-- blobs are bytea, the registry's row id is an identity column.

CREATE TABLE clusters (
	name          text    NOT NULL PRIMARY KEY,
	project       text    NOT NULL,
	generation    integer NOT NULL CHECK (generation >= 1),
	key_algorithm text    NOT NULL,
	common_name   text    NOT NULL,
	validity_days integer NOT NULL,
	created_at    timestamptz
);

CREATE TABLE ca_generations (
	cluster         text    NOT NULL REFERENCES clusters (name),
	generation      integer NOT NULL CHECK (generation >= 1),
	key_ref         text    NOT NULL UNIQUE,
	certificate_der bytea   NOT NULL,
	key_algorithm   text    NOT NULL,
	not_before      timestamptz,
	not_after       timestamptz,
	created_at      timestamptz,
	retired_at      timestamptz,
	trusted_until   timestamptz,
	PRIMARY KEY (cluster, generation)
);

CREATE TABLE issued_certificates (
	id          bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	cluster     text    NOT NULL,
	serial      text    NOT NULL,
	generation  integer NOT NULL,
	subject     text    NOT NULL,
	profile     text    NOT NULL,
	user_name   text    NOT NULL,
	project     text    NOT NULL,
	not_before  timestamptz,
	not_after   timestamptz,
	issued_at   timestamptz,
	revoked_at  timestamptz,
	UNIQUE (cluster, serial),
	FOREIGN KEY (cluster, generation) REFERENCES ca_generations (cluster, generation)
);

CREATE INDEX issued_certificates_by_generation ON issued_certificates (cluster, generation);
CREATE INDEX issued_certificates_by_issue ON issued_certificates (cluster, issued_at);

CREATE TABLE blobs (
	ref        text        NOT NULL PRIMARY KEY,
	blob       bytea       NOT NULL,
	created_at timestamptz NOT NULL
);

CREATE TABLE keks (
	name           text    NOT NULL PRIMARY KEY,
	project        text    NOT NULL,
	active_version integer NOT NULL CHECK (active_version >= 1),
	created_at     timestamptz
);

CREATE TABLE kek_versions (
	name       text    NOT NULL REFERENCES keks (name),
	version    integer NOT NULL CHECK (version >= 1),
	key_ref    text    NOT NULL UNIQUE,
	key_id     text    NOT NULL UNIQUE,
	created_at timestamptz,
	PRIMARY KEY (name, version)
);
