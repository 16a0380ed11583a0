package software

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/keys/keystest"
)

// TestContractWithKEKCache holds software custody with its KEK cache on to
// the custody contract (destroyed keys, forgeries, round trips).
func TestContractWithKEKCache(t *testing.T) {
	keystest.Run(t, func(t *testing.T) keys.Custody {
		c, err := New(randomKey(t), emptyStore(t))
		if err != nil {
			t.Fatal(err)
		}
		c.CacheKEKs(time.Minute)
		return c
	})
}

// countingBlobs counts GetBlob calls.
type countingBlobs struct {
	*memBlobs
	gets int
}

func (s *countingBlobs) GetBlob(ctx context.Context, ref string) ([]byte, error) {
	s.gets++
	return s.memBlobs.GetBlob(ctx, ref)
}

func TestKEKCache(t *testing.T) {
	ctx := context.Background()
	const ttl = 5 * time.Second
	tests := []struct {
		name string
		// act runs after one Seal has (maybe) cached the KEK "k"; it may
		// advance the clock.
		act       func(t *testing.T, c *Custody, blobs *countingBlobs, clock *time.Time)
		cache     bool
		wantGets  int   // GetBlob calls made by the Seal after act
		wantErrIs error // of that Seal
	}{
		{"without the cache every Seal reads the blob", func(*testing.T, *Custody, *countingBlobs, *time.Time) {}, false, 1, nil},
		{"with the cache a Seal within the TTL reads nothing", func(*testing.T, *Custody, *countingBlobs, *time.Time) {}, true, 0, nil},
		{"after the TTL the blob is read again", func(_ *testing.T, _ *Custody, _ *countingBlobs, clock *time.Time) {
			*clock = clock.Add(ttl)
		}, true, 1, nil},
		{"after the TTL a swapped blob is refused", func(_ *testing.T, _ *Custody, blobs *countingBlobs, clock *time.Time) {
			blobs.set("k", []byte{blobFormat, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28})
			*clock = clock.Add(ttl)
		}, true, 1, ErrBlobIntegrity},
		{"Destroy drops the cached KEK at once", func(t *testing.T, c *Custody, _ *countingBlobs, _ *time.Time) {
			if err := c.Destroy(ctx, "k"); err != nil {
				t.Fatal(err)
			}
		}, true, 1, keys.ErrNotFound},
		{"turning the cache off drops it", func(_ *testing.T, c *Custody, _ *countingBlobs, _ *time.Time) {
			c.CacheKEKs(0)
		}, true, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blobs := &countingBlobs{memBlobs: newMemBlobs()}
			c, err := New(randomKey(t), blobs)
			if err != nil {
				t.Fatal(err)
			}
			clock := time.Unix(1_800_000_000, 0)
			c.now = func() time.Time { return clock }
			if tt.cache {
				c.CacheKEKs(ttl)
			}
			if err := c.GenerateKEK(ctx, "k"); err != nil {
				t.Fatal(err)
			}
			ct, err := c.Seal(ctx, "k", []byte("seed"), []byte("aad"))
			if err != nil {
				t.Fatal(err)
			}
			tt.act(t, c, blobs, &clock)
			blobs.gets = 0
			_, err = c.Seal(ctx, "k", []byte("seed"), []byte("aad"))
			if blobs.gets != tt.wantGets {
				t.Errorf("Seal read %d blobs, want %d", blobs.gets, tt.wantGets)
			}
			if tt.wantErrIs == nil {
				if err != nil {
					t.Fatalf("Seal: %v", err)
				}
				if pt, err := c.Open(ctx, "k", ct, []byte("aad")); err != nil || string(pt) != "seed" {
					t.Fatalf("Open = %q, %v", pt, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErrIs) {
				t.Fatalf("Seal = %v, want %v", err, tt.wantErrIs)
			}
		})
	}
}
