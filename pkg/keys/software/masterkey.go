package software

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/clusterkeys/clusterkeys/internal/secretfile"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// MasterKeySize is the length of the master key in bytes (AES-256).
const MasterKeySize = 32

// BlobLister lists the blobs of a store, never their contents;
// pkg/store/sqlite implements it.
type BlobLister interface {
	// ListBlobs returns the blobs whose ref starts with prefix.
	ListBlobs(ctx context.Context, prefix string) ([]store.Blob, error)
}

// barbicanPrefix starts the refs of the blobs Barbican custody keeps in the
// same table (secret hrefs, not sealed under the master key).
const barbicanPrefix = "barbican/"

// LoadOrCreateMasterKey returns the master key stored at path. When the file
// does not exist it creates it (O_EXCL, mode 0600) with MasterKeySize random
// bytes, creating the parent directory (0700) if needed, but only while
// blobs holds no sealed key: a missing file next to sealed keys means the
// key was lost or the path is wrong, and a new key would make every stored
// key unreadable, so that is refused with an error naming the file. An
// existing file that is not exactly MasterKeySize bytes long, is not a
// regular file, or can be read by its group or by others is refused with an
// error that says why; nothing is ever repaired silently.
func LoadOrCreateMasterKey(ctx context.Context, path string, blobs BlobLister) ([]byte, error) {
	if path == "" {
		return nil, errors.New("master key file: no path given")
	}
	if blobs == nil {
		return nil, errors.New("master key file: no blob store to check")
	}
	for range 3 {
		key, err := readMasterKey(path)
		if err == nil {
			return key, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if err := refuseIfSealed(ctx, path, blobs); err != nil {
			return nil, err
		}
		key, err = createMasterKey(path)
		if err == nil {
			return key, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		// Another process created it between our read and our create:
		// read what it wrote.
	}
	return nil, fmt.Errorf("master key file %s: created and removed concurrently", path)
}

// refuseIfSealed fails when blobs holds keys sealed under a master key.
func refuseIfSealed(ctx context.Context, path string, blobs BlobLister) error {
	all, err := blobs.ListBlobs(ctx, "")
	if err != nil {
		return fmt.Errorf("master key file %s is missing and the store cannot say whether it holds keys sealed under it: %w", path, err)
	}
	sealed := 0
	for _, b := range all {
		if !strings.HasPrefix(b.Ref, barbicanPrefix) {
			sealed++
		}
	}
	if sealed > 0 {
		return fmt.Errorf("master key file %s is missing but the store holds %d keys sealed under a master key: "+
			"restore the file (or point --master-key-file at it); a new master key would make every one of them unreadable", path, sealed)
	}
	return nil
}

func readMasterKey(path string) ([]byte, error) {
	f, fi, err := secretfile.Open(path, "master key file")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.Size() != MasterKeySize {
		return nil, fmt.Errorf("master key file %s is %d bytes long, want exactly %d", path, fi.Size(), MasterKeySize)
	}
	key := make([]byte, MasterKeySize)
	if _, err := io.ReadFull(f, key); err != nil {
		return nil, fmt.Errorf("read master key file %s: %w", path, err)
	}
	return key, nil
}

func createMasterKey(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create master key directory: %w", err)
	}
	key := make([]byte, MasterKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate master key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create master key file: %w", err)
	}
	_, werr := f.Write(key)
	if werr == nil {
		werr = f.Sync()
	}
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		// A short file would be refused on the next start; remove it so a
		// retry starts clean. Nothing was sealed under this key yet.
		_ = os.Remove(path)
		return nil, fmt.Errorf("write master key file %s: %w", path, err)
	}
	return key, nil
}

// EnvMasterKey is the environment variable that delivers the master key,
// base64 (standard, padded or not), for instances that have no file of
// their own to share, such as Lambda functions: every instance must use the
// same key, or none can open the others' blobs.
const EnvMasterKey = "CLUSTERKEYS_MASTER_KEY"

// MasterKeyFromEnv returns the master key that EnvMasterKey, looked up with
// lookup (os.LookupEnv), holds; ok is false when it is not set. A value
// that is not base64 of exactly MasterKeySize bytes is an error, which
// never shows the value.
func MasterKeyFromEnv(lookup func(string) (string, bool)) (key []byte, ok bool, err error) {
	v, ok := lookup(EnvMasterKey)
	if !ok {
		return nil, false, nil
	}
	v = strings.TrimSpace(v)
	enc := base64.StdEncoding
	if !strings.HasSuffix(v, "=") {
		enc = base64.RawStdEncoding
	}
	key, err = enc.DecodeString(v)
	if err != nil {
		// The decoder's error quotes the offending byte: say only where.
		var ce base64.CorruptInputError
		if errors.As(err, &ce) {
			return nil, true, fmt.Errorf("%s: not base64 (at byte %d); make one with: head -c %d /dev/urandom | base64", EnvMasterKey, int64(ce), MasterKeySize)
		}
		return nil, true, fmt.Errorf("%s: not base64; make one with: head -c %d /dev/urandom | base64", EnvMasterKey, MasterKeySize)
	}
	if len(key) != MasterKeySize {
		return nil, true, fmt.Errorf("%s: %d bytes once decoded, want exactly %d", EnvMasterKey, len(key), MasterKeySize)
	}
	return key, true, nil
}
