-- 0006: a cluster's signing policy (PUT /v1/clusters/{cluster}/policy):
-- validity per profile and the groups members may request, as JSON text
-- (store.ClusterPolicy), NULL when none is set. It lives in the cluster's
-- row so that a sign reads it with the cluster and its active CA, in the one
-- read it already makes.

ALTER TABLE clusters ADD COLUMN policy TEXT;
