-- 0004: what the custody reconciler (pkg/reconcile) needs.
--
-- leases: named leases, so that one instance at a time runs a job shared by
-- every instance on the store. A holder takes a lease with a compare-and-swap
-- (insert, or update only when the lease expired or is its own).
--
-- custody_first_seen: when the reconciler first saw a custody key whose
-- listing gives no creation time (PKCS#11 objects), so that its safety
-- window counts from then. Rows of keys no longer in custody are deleted.

CREATE TABLE leases (
	name       TEXT NOT NULL PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_at TEXT NOT NULL
) STRICT;

CREATE TABLE custody_first_seen (
	ref        TEXT NOT NULL PRIMARY KEY,
	first_seen TEXT NOT NULL
) STRICT;
