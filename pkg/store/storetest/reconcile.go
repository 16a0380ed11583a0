package storetest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// testKeyRefs checks the refs the reconciler must keep (active CA
// generations, every KEK version) and those it must destroy (retired CA
// generations).
func testKeyRefs(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	CreateCluster(t, d, "a")
	CreateCluster(t, d, "b")
	for gen := 2; gen <= 3; gen++ {
		if err := d.Rekey(ctx, "a", gen-1, Generation("a", gen), T0, T0); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.CreateKEK(ctx, KEK("k"), KEKVersion("k", 1)); err != nil {
		t.Fatal(err)
	}
	if err := d.RotateKEK(ctx, "k", 1, KEKVersion("k", 2)); err != nil {
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

// testListBlobs checks the prefix listing of blobs: byte order of refs,
// no wildcard in the prefix, never the contents.
func testListBlobs(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, _ := newStore(t)
	before := time.Now().Add(-time.Minute)
	for _, ref := range []string{"ca/x/1/aa", "kek/k_1/v1/bb", "kekXk/v1", "kek%/v1", "barbican/ca/x/1/aa", "Z/upper"} {
		if err := d.PutBlob(ctx, ref, []byte("secret "+ref)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"Z/upper", "barbican/ca/x/1/aa", "ca/x/1/aa", "kek%/v1", "kek/k_1/v1/bb", "kekXk/v1"}},
		{"ca/", []string{"ca/x/1/aa"}},
		{"kek/k_", []string{"kek/k_1/v1/bb"}},
		{"kek_", nil},                 // '_' is not a wildcard
		{"kek%", []string{"kek%/v1"}}, // nor is '%'
		{"z/", nil},                   // the prefix is case-sensitive
	}
	for _, tt := range tests {
		t.Run("prefix "+tt.prefix, func(t *testing.T) {
			blobs, err := d.ListBlobs(ctx, tt.prefix)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, b := range blobs {
				if b.CreatedAt.Before(before) || time.Since(b.CreatedAt) > time.Minute {
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

// testLease checks the lease compare-and-swap through two handles (two
// instances), including a time a nanosecond before expiry, and that of
// many racing takers exactly one wins.
func testLease(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	one, another := newStore(t)
	two := another()
	ttl := time.Minute
	steps := []struct {
		name   string
		db     Store
		holder string
		at     time.Time
		want   bool
	}{
		{"the first taker gets it", one, "one", T0, true},
		{"another holder is refused a nanosecond before expiry", two, "two", T0.Add(ttl - time.Nanosecond), false},
		{"the holder renews it", one, "one", T0.Add(30 * time.Second), true},
		{"the renewal extends it", two, "two", T0.Add(ttl + time.Second), false},
		{"another holder takes it once expired", two, "two", T0.Add(30*time.Second + ttl), true},
		{"and the first is now refused", one, "one", T0.Add(31*time.Second + ttl), false},
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
	if got, _ := one.AcquireLease(ctx, "reconcile", "one", T0.Add(32*time.Second+ttl), ttl); got {
		t.Fatal("releasing a lease one does not hold released it")
	}
	if err := two.ReleaseLease(ctx, "reconcile", "two"); err != nil {
		t.Fatal(err)
	}
	if got, _ := one.AcquireLease(ctx, "reconcile", "one", T0.Add(33*time.Second+ttl), ttl); !got {
		t.Fatal("a released lease cannot be taken")
	}
	for _, bad := range []struct {
		name, holder string
		ttl          time.Duration
	}{{"", "h", ttl}, {"n", "", ttl}, {"n", "h", 0}} {
		if _, err := one.AcquireLease(ctx, bad.name, bad.holder, T0, bad.ttl); err == nil {
			t.Errorf("AcquireLease(%q, %q, %v) accepted", bad.name, bad.holder, bad.ttl)
		}
	}

	t.Run("of many racing takers exactly one wins", func(t *testing.T) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		winners := 0
		for i := range 8 {
			db := []Store{one, two}[i%2]
			wg.Go(func() {
				got, err := db.AcquireLease(ctx, "race", string(rune('a'+i)), T0, ttl)
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

// testFirstSeen checks the first-seen registry of undated custody keys:
// kept while seen, forgotten once gone, shared by the handles.
func testFirstSeen(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, another := newStore(t)
	seen, err := d.FirstSeen(ctx, []string{"a", "b", "a"}, T0)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || !seen["a"].Equal(T0) || !seen["b"].Equal(T0) {
		t.Fatalf("first pass: %v", seen)
	}
	later := T0.Add(time.Hour)
	seen, err = another().FirstSeen(ctx, []string{"a", "c"}, later)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || !seen["a"].Equal(T0) || !seen["c"].Equal(later) {
		t.Fatalf("second pass (another handle): %v, want a at T0 (kept) and c now", seen)
	}
	// b left custody and was forgotten: seen again, it starts over.
	seen, err = d.FirstSeen(ctx, []string{"b"}, later.Add(time.Hour))
	if err != nil || len(seen) != 1 || !seen["b"].Equal(later.Add(time.Hour)) {
		t.Fatalf("third pass: %v, %v", seen, err)
	}
	// Nothing left in custody: everything is forgotten.
	if seen, err = d.FirstSeen(ctx, nil, later); err != nil || len(seen) != 0 {
		t.Fatalf("empty pass: %v, %v", seen, err)
	}
	if seen, err = d.FirstSeen(ctx, []string{"b"}, later.Add(2*time.Hour)); err != nil || !seen["b"].Equal(later.Add(2*time.Hour)) {
		t.Fatalf("after the empty pass: %v, %v", seen, err)
	}
}
