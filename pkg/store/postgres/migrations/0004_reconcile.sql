-- 0004: what the custody reconciler (pkg/reconcile) needs; the same tables
-- as SQLite's 0004_reconcile.sql, times in timestamptz.
--
-- leases: named leases, so that one instance at a time runs a job shared by
-- every instance on the store. A holder takes a lease with a compare-and-swap
-- (insert, or update only when the lease expired or is its own).
--
-- custody_first_seen: when the reconciler first saw a custody key whose
-- listing gives no creation time (PKCS#11 objects), so that its safety
-- window counts from then. Rows of keys no longer in custody are deleted.

CREATE TABLE leases (
	name       text        NOT NULL PRIMARY KEY,
	holder     text        NOT NULL,
	expires_at timestamptz NOT NULL
);

CREATE TABLE custody_first_seen (
	ref        text        NOT NULL PRIMARY KEY,
	first_seen timestamptz NOT NULL
);
