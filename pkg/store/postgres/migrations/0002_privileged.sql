-- 0002: mark the issued certificates whose subject Kubernetes treats as
-- powerful (a CN or O beginning "system:", O=kubeadm:cluster-admins), which
-- only an admin may obtain, so that an audit can find them. The same as
-- SQLite's 0002_privileged.sql.
--
-- Rows recorded before this migration are marked from their subject text
-- (crypto/x509/pkix Name.String: "CN=…,O=…", RDNs joined by "," and
-- multi-valued ones by "+"). SQLite's LIKE ignores ASCII case and
-- PostgreSQL's does not: ILIKE marks the same rows here. A value holding an
-- escaped ",CN=system:" may be over-marked, never under-marked unless it
-- began with an escaped space.

ALTER TABLE issued_certificates ADD COLUMN privileged boolean NOT NULL DEFAULT false;

UPDATE issued_certificates SET privileged = true
WHERE subject ILIKE 'CN=system:%' OR subject ILIKE '%,CN=system:%' OR subject ILIKE '%+CN=system:%'
   OR subject ILIKE 'O=system:%' OR subject ILIKE '%,O=system:%' OR subject ILIKE '%+O=system:%'
   OR subject ILIKE 'O=kubeadm:cluster-admins' OR subject ILIKE 'O=kubeadm:cluster-admins,%' OR subject ILIKE 'O=kubeadm:cluster-admins+%'
   OR subject ILIKE '%,O=kubeadm:cluster-admins' OR subject ILIKE '%,O=kubeadm:cluster-admins,%' OR subject ILIKE '%,O=kubeadm:cluster-admins+%'
   OR subject ILIKE '%+O=kubeadm:cluster-admins' OR subject ILIKE '%+O=kubeadm:cluster-admins,%' OR subject ILIKE '%+O=kubeadm:cluster-admins+%';
