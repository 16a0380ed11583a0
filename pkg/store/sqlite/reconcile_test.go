package sqlite

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
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

func TestKeyRefs(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	createCluster(t, d, "a")
	createCluster(t, d, "b")
	for gen := 2; gen <= 3; gen++ {
		if err := d.Rekey(ctx, "a", gen-1, testGeneration("a", gen), t0, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.CreateKEK(ctx, testKEK("k"), testKEKVersion("k", 1)); err != nil {
		t.Fatal(err)
	}
	if err := d.RotateKEK(ctx, "k", 1, testKEKVersion("k", 2)); err != nil {
		t.Fatal(err)
	}
	refs, err := d.KeyRefs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(refs.Live)
	slices.Sort(refs.Retired)
	wantLive := []string{"ca/a/3", "ca/b/1", "kek/k/1", "kek/k/2"}
	wantRetired := []string{"ca/a/1", "ca/a/2"}
	if !slices.Equal(refs.Live, wantLive) || !slices.Equal(refs.Retired, wantRetired) {
		t.Fatalf("KeyRefs = live %v retired %v, want %v and %v", refs.Live, refs.Retired, wantLive, wantRetired)
	}
}

func TestListBlobs(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	for _, ref := range []string{"ca/x/1/aa", "kek/k_1/v1/bb", "kekXk/v1", "barbican/ca/x/1/aa"} {
		if err := d.PutBlob(ctx, ref, []byte("secret "+ref)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"barbican/ca/x/1/aa", "ca/x/1/aa", "kek/k_1/v1/bb", "kekXk/v1"}},
		{"ca/", []string{"ca/x/1/aa"}},
		{"kek/k_", []string{"kek/k_1/v1/bb"}},
		{"kek_", nil}, // '_' is not a wildcard
	}
	for _, tt := range tests {
		t.Run("prefix "+tt.prefix, func(t *testing.T) {
			blobs, err := d.ListBlobs(ctx, tt.prefix)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, b := range blobs {
				if b.CreatedAt.IsZero() || time.Since(b.CreatedAt) > time.Minute {
					t.Errorf("blob %s created at %v", b.Ref, b.CreatedAt)
				}
				got = append(got, b.Ref)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ListBlobs(%q) = %v, want %v", tt.prefix, got, tt.want)
			}
		})
	}
}

func TestLeaseExcludesASecondHolder(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir() + "/lease.db"
	one, two := openAt(t, path), openAt(t, path) // two processes on one file
	ttl := time.Minute
	steps := []struct {
		name   string
		db     *DB
		holder string
		at     time.Time
		want   bool
	}{
		{"the first taker gets it", one, "one", t0, true},
		{"another holder is refused while it lasts", two, "two", t0.Add(ttl - time.Second), false},
		{"the holder renews it", one, "one", t0.Add(30 * time.Second), true},
		{"the renewal extends it", two, "two", t0.Add(ttl + time.Second), false},
		{"another holder takes it once expired", two, "two", t0.Add(30*time.Second + ttl), true},
		{"and the first is now refused", one, "one", t0.Add(31*time.Second + ttl), false},
	}
	for _, s := range steps {
		got, err := s.db.AcquireLease(ctx, "reconcile", s.holder, s.at, ttl)
		if err != nil || got != s.want {
			t.Fatalf("%s: AcquireLease = %v, %v; want %v", s.name, got, err, s.want)
		}
	}
	if err := one.ReleaseLease(ctx, "reconcile", "one"); err != nil {
		t.Fatal(err)
	}
	if got, _ := one.AcquireLease(ctx, "reconcile", "one", t0.Add(32*time.Second+ttl), ttl); got {
		t.Fatal("releasing a lease one does not hold released it")
	}
	if err := two.ReleaseLease(ctx, "reconcile", "two"); err != nil {
		t.Fatal(err)
	}
	if got, _ := one.AcquireLease(ctx, "reconcile", "one", t0.Add(33*time.Second+ttl), ttl); !got {
		t.Fatal("a released lease cannot be taken")
	}

	t.Run("of many racing takers exactly one wins", func(t *testing.T) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		winners := 0
		for i := range 8 {
			db := []*DB{one, two}[i%2]
			wg.Go(func() {
				got, err := db.AcquireLease(ctx, "race", string(rune('a'+i)), t0, ttl)
				if err != nil {
					t.Error(err)
				}
				if got {
					mu.Lock()
					winners++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if winners != 1 {
			t.Fatalf("%d winners, want 1", winners)
		}
	})
}

func TestFirstSeen(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	seen, err := d.FirstSeen(ctx, []string{"a", "b", "a"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || !seen["a"].Equal(t0) || !seen["b"].Equal(t0) {
		t.Fatalf("first pass: %v", seen)
	}
	later := t0.Add(time.Hour)
	seen, err = d.FirstSeen(ctx, []string{"a", "c"}, later)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || !seen["a"].Equal(t0) || !seen["c"].Equal(later) {
		t.Fatalf("second pass: %v, want a at t0 (kept) and c now", seen)
	}
	// b left custody and was forgotten: seen again, it starts over.
	seen, err = d.FirstSeen(ctx, []string{"b"}, later.Add(time.Hour))
	if err != nil || !seen["b"].Equal(later.Add(time.Hour)) {
		t.Fatalf("third pass: %v, %v", seen, err)
	}
}
