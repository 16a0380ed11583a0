package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/storetest"
)

// TestMigrationMarksPrivilegedCertificatesAlreadyIssued opens, with this
// binary, a database written by one that knew only migration 1: the rows it
// recorded come back marked privileged by their subject.
func TestMigrationMarksPrivilegedCertificatesAlreadyIssued(t *testing.T) {
	ctx := context.Background()
	known := storetest.Migrations(t, migrationFiles)
	path := filepath.Join(t.TempDir(), "clusterkeys.db")
	if err := createFile(path); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn(path, BusyTimeout))
	if err != nil {
		t.Fatal(err)
	}
	old := &DB{db: db, path: path, writer: make(chan struct{}, 1)}
	first := storetest.MigrationFS(known[:1], nil)
	if err := old.migrate(ctx, first); err != nil {
		t.Fatal(err)
	}
	createCluster(t, old, "c")
	storetest.PrivilegedMigration(t, func(ic store.IssuedCertificate) error {
		_, err := db.ExecContext(ctx, `INSERT INTO issued_certificates
			(cluster, serial, generation, subject, profile, user_name, project, not_before, not_after, issued_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			ic.Cluster, ic.Serial, ic.Generation, ic.Subject, ic.Profile, ic.User, ic.Project,
			formatTime(ic.NotBefore), formatTime(ic.NotAfter), formatTime(ic.IssuedAt))
		return err
	}, func() storetest.Store {
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		return openAt(t, path)
	})
}
