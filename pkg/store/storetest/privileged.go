package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// PrivilegedMigration checks the migration that marks the certificates an
// older binary recorded as privileged by their subject (the system: and
// kubeadm:cluster-admins groups, whatever the case of "system:", with
// LIKE's wildcards taken literally). write records ic, subject included,
// as a binary that knew only migration 1 did, in its database holding
// cluster "c"; migrated then opens that database with every migration.
func PrivilegedMigration(t *testing.T, write func(ic store.IssuedCertificate) error, migrated func() Store) {
	t.Helper()
	subjects := []struct {
		subject    string
		privileged bool
	}{
		{"CN=alice,O=dev", false},
		{"CN=system:node:n1,O=system:nodes", true},
		{"CN=root,O=System:Masters", true},
		{"cn=SYSTEM:admin", true},
		{"CN=x,O=kubeadm:cluster-admins", true},
		{"CN=x,O=kubeadm:cluster-admins-not", false},
		{"CN=bob,O=dev+O=system:nodes", true},
		{"CN=my-system:thing", false},
		{"OU=system:ops,CN=carol", false},
		{"CN=under_score%,O=dev", false},
	}
	for i, s := range subjects {
		ic := Cert("c", 1, i+1)
		ic.Subject = s.subject
		if err := write(ic); err != nil {
			t.Fatal(err)
		}
	}
	got, err := migrated().Certificates(context.Background(), store.CertificateQuery{Cluster: "c", Limit: 1000, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(subjects) {
		t.Fatalf("%d certificates after the migration, want %d", len(got), len(subjects))
	}
	marked := map[string]bool{}
	for _, c := range got {
		marked[c.Subject] = c.Privileged
	}
	for _, s := range subjects {
		if marked[s.subject] != s.privileged {
			t.Errorf("%s: privileged = %v, want %v", s.subject, marked[s.subject], s.privileged)
		}
	}
}
