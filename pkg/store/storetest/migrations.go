package storetest

import (
	"fmt"
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// Migrations returns the migrations of fsys as store.LoadMigrations reads
// them; t fails if it cannot.
func Migrations(t testing.TB, fsys fs.FS) []store.Migration {
	t.Helper()
	ms, err := store.LoadMigrations(fsys)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// MigrationFS returns ms, and the files of extra (which it adds them to;
// nil for none), as a file system a store's migrations are read from: a
// store as an older or newer binary would have migrated it.
func MigrationFS(ms []store.Migration, extra fstest.MapFS) fstest.MapFS {
	if extra == nil {
		extra = fstest.MapFS{}
	}
	for _, m := range ms {
		extra[fmt.Sprintf("migrations/%04d_%s.sql", m.Version, m.Name)] = &fstest.MapFile{Data: []byte(m.SQL)}
	}
	return extra
}
