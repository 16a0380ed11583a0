package sqlite

import (
	"context"
	"testing"
)

func TestEveryConnectionIsDurableAndErasesWhatItDeletes(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	// The pragmas are per connection: hold several at once so the pool
	// must open new ones, and read them back on each.
	var conns []interface{ Close() error }
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := range 3 {
		c, err := d.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var synchronous, secureDelete int
		if err := c.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&synchronous); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA secure_delete").Scan(&secureDelete); err != nil {
			t.Fatal(err)
		}
		if synchronous != 2 || secureDelete != 1 {
			t.Fatalf("connection %d: synchronous=%d secure_delete=%d, want 2 (FULL) and 1 (ON)", i, synchronous, secureDelete)
		}
	}
}
