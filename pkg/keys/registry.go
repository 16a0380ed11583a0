package keys

import (
	"context"
	"log/slog"

	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// BlobStore is the part of the metadata store where custody may keep
// records of its own by ref (software custody's sealed keys, Barbican's
// secret hrefs); every store implements it.
type BlobStore interface {
	// PutBlob stores blob under ref; an existing ref fails with an error
	// wrapping ErrConflict.
	PutBlob(ctx context.Context, ref string, blob []byte) error
	// GetBlob returns the blob stored under ref (ErrNotFound when absent).
	GetBlob(ctx context.Context, ref string) ([]byte, error)
	// DeleteBlob deletes the blob stored under ref (ErrNotFound when absent).
	DeleteBlob(ctx context.Context, ref string) error
}

// Blobs is a BlobStore that also lists its blobs, as every store does.
type Blobs interface {
	BlobStore
	// ListBlobs returns the blobs whose ref starts with prefix, never
	// their contents.
	ListBlobs(ctx context.Context, prefix string) ([]store.Blob, error)
}

// OpenOptions are what a backend is opened with.
type OpenOptions struct {
	// Config is the resolved configuration.
	Config config.Config
	// Blobs is the opened metadata store.
	Blobs Blobs
	// Logger receives the backend's logs (never nil); Registerer its
	// metrics (nil: none).
	Logger     *slog.Logger
	Registerer metrics.Registerer
}

// Backend is a custody backend as it registers itself.
type Backend struct {
	// Rank, Flags and Environ are what the settings know of it (see
	// config.CustodyBackend).
	Rank    int
	Flags   []string
	Environ []string
	// NoSignerCache is whether the CA must load keys for each operation
	// rather than keep signers (Barbican: a key lives in memory only while
	// it is used).
	NoSignerCache bool
	// Open opens the custody the configuration describes. A custody that
	// is an io.Closer is closed with the store.
	Open func(ctx context.Context, o OpenOptions) (Custody, error)
}

var backends config.Registry[Backend]

// Register makes the custody backend called name (its --keys value)
// available to pkg/backends and known to the settings. A backend package
// calls it from its init; a binary links the backends it imports (see
// pkg/backends/all). It panics when name is taken.
func Register(name string, b Backend) {
	backends.Register(name, b)
	config.RegisterCustody(config.CustodyBackend{Name: name, Rank: b.Rank, Flags: b.Flags, Environ: b.Environ})
}

// Lookup returns the custody backend called name.
func Lookup(name string) (Backend, bool) { return backends.Lookup(name) }
