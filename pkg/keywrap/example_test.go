package keywrap_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// A KEK is created once; data keys are wrapped under its active version and
// unwrapped with the version the ciphertext names, also after a rotation.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "keywrap-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	db, err := sqlite.Open(ctx, filepath.Join(dir, "clusterkeys.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	mk, err := software.LoadOrCreateMasterKey(ctx, filepath.Join(dir, "master.key"), db)
	if err != nil {
		log.Fatal(err)
	}
	custody, err := software.New(mk, db)
	if err != nil {
		log.Fatal(err)
	}
	svc := keywrap.New(db, custody, keywrap.Options{})

	if _, _, _, err := svc.Create(ctx, "etcd", "kube-system"); err != nil {
		log.Fatal(err)
	}
	ct, v, err := svc.Wrap(ctx, "etcd", []byte("a data encryption key"), []byte("secrets/default/db"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("wrapped with version", v.Version)

	if _, err := svc.Rotate(ctx, "etcd", v.Version); err != nil {
		log.Fatal(err)
	}
	pt, v, err := svc.Unwrap(ctx, "etcd", ct, []byte("secrets/default/db"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("unwrapped %q with version %d\n", pt, v.Version)

	_, _, err = svc.Unwrap(ctx, "etcd", ct, []byte("secrets/default/other"))
	fmt.Println(err != nil)
	// Output:
	// wrapped with version 1
	// unwrapped "a data encryption key" with version 1
	// true
}
