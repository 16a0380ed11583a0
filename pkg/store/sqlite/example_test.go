package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

// A rekey is a compare-and-swap on the generation: a caller that read a
// stale generation loses with api.ErrGenerationMismatch.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "clusterkeys")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	db, err := sqlite.Open(ctx, filepath.Join(dir, "clusterkeys.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	c := store.Cluster{Name: "prod", Project: "p1", Generation: 1, KeyAlgorithm: "ecdsa-p256"}
	if err := db.CreateCluster(ctx, c, store.CAGeneration{Generation: 1, KeyRef: "ca/prod/1"}); err != nil {
		log.Fatal(err)
	}
	next := store.CAGeneration{Generation: 2, KeyRef: "ca/prod/2"}
	fmt.Println("first rekey:", db.Rekey(ctx, "prod", 1, next, c.CreatedAt, c.CreatedAt))
	next.KeyRef = "ca/prod/2-other"
	err = db.Rekey(ctx, "prod", 1, next, c.CreatedAt, c.CreatedAt)
	fmt.Println("stale rekey is a mismatch:", errors.Is(err, api.ErrGenerationMismatch))
	// Output:
	// first rekey: <nil>
	// stale rekey is a mismatch: true
}
