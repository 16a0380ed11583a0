-- 0002: mark the issued certificates whose subject Kubernetes treats as
-- powerful (a CN or O beginning "system:", O=kubeadm:cluster-admins), which
-- only an admin may obtain, so that an audit can find them.
--
-- Rows recorded before this migration are marked from their subject text
-- (crypto/x509/pkix Name.String: "CN=…,O=…", RDNs joined by "," and
-- multi-valued ones by "+"); LIKE is case-insensitive for ASCII. A value
-- holding an escaped ",CN=system:" may be over-marked, never under-marked
-- unless it began with an escaped space.

ALTER TABLE issued_certificates ADD COLUMN privileged INTEGER NOT NULL DEFAULT 0 CHECK (privileged IN (0, 1));

UPDATE issued_certificates SET privileged = 1
WHERE subject LIKE 'CN=system:%' OR subject LIKE '%,CN=system:%' OR subject LIKE '%+CN=system:%'
   OR subject LIKE 'O=system:%' OR subject LIKE '%,O=system:%' OR subject LIKE '%+O=system:%'
   OR subject LIKE 'O=kubeadm:cluster-admins' OR subject LIKE 'O=kubeadm:cluster-admins,%' OR subject LIKE 'O=kubeadm:cluster-admins+%'
   OR subject LIKE '%,O=kubeadm:cluster-admins' OR subject LIKE '%,O=kubeadm:cluster-admins,%' OR subject LIKE '%,O=kubeadm:cluster-admins+%'
   OR subject LIKE '%+O=kubeadm:cluster-admins' OR subject LIKE '%+O=kubeadm:cluster-admins,%' OR subject LIKE '%+O=kubeadm:cluster-admins+%';
