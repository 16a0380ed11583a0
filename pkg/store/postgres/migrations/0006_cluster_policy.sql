-- 0006: a cluster's signing policy (PUT /v1/clusters/{cluster}/policy); the
-- same column as SQLite's 0006_cluster_policy.sql: validity per profile and
-- the groups members may request, as JSON text (store.ClusterPolicy), NULL
-- when none is set. text rather than jsonb: the store reads back exactly
-- what it wrote, and nothing queries inside it. It lives in the cluster's
-- row so that a sign reads it with the cluster and its active CA, in the one
-- read it already makes.

ALTER TABLE clusters ADD COLUMN policy text;
