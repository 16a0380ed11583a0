package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/storetest"
)

// TestMigrationMarksPrivilegedCertificatesAlreadyIssued opens, with this
// binary, a database written by one that knew only migration 1: the rows it
// recorded come back marked privileged by their subject.
func TestMigrationMarksPrivilegedCertificatesAlreadyIssued(t *testing.T) {
	ctx := context.Background()
	known, err := store.LoadMigrations(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "clusterkeys.db")
	if err := createFile(path); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn(path, BusyTimeout))
	if err != nil {
		t.Fatal(err)
	}
	old := &DB{db: db, path: path, writer: make(chan struct{}, 1)}
	first := fstest.MapFS{filepathForVersion(known[0]): {Data: []byte(known[0].SQL)}}
	if err := old.migrate(ctx, first); err != nil {
		t.Fatal(err)
	}
	createCluster(t, old, "c")
	subjects := []struct {
		subject    string
		privileged bool
	}{
		{"CN=alice,O=dev", false},
		{"CN=system:node:n1,O=system:nodes", true},
		{"CN=root,O=System:Masters", true},
		{"CN=x,O=kubeadm:cluster-admins", true},
		{"CN=x,O=kubeadm:cluster-admins-not", false},
		{"CN=bob,O=dev+O=system:nodes", true},
		{"CN=my-system:thing", false},
		{"OU=system:ops,CN=carol", false},
	}
	for i, s := range subjects {
		ic := storetest.Cert("c", 1, i+1)
		if _, err := db.ExecContext(ctx, `INSERT INTO issued_certificates
			(cluster, serial, generation, subject, profile, user_name, project, not_before, not_after, issued_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			ic.Cluster, ic.Serial, ic.Generation, s.subject, ic.Profile, ic.User, ic.Project,
			formatTime(ic.NotBefore), formatTime(ic.NotAfter), formatTime(ic.IssuedAt)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	d := openAt(t, path)
	got, err := d.Certificates(ctx, store.CertificateQuery{Cluster: "c", Limit: 1000, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
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
