package backends

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

func resolved(t *testing.T, c config.Config) config.Config {
	t.Helper()
	c, err := c.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// With CLUSTERKEYS_MASTER_KEY set, every instance uses that key: no master
// key file is read or created, and what one instance sealed another opens.
func TestMasterKeyFromTheEnvironment(t *testing.T) {
	ctx := context.Background()
	mk := make([]byte, software.MasterKeySize)
	if _, err := rand.Read(mk); err != nil {
		t.Fatal(err)
	}
	t.Setenv(software.EnvMasterKey, base64.StdEncoding.EncodeToString(mk))
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	cfg = resolved(t, cfg)

	b, err := Open(ctx, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Custody.GenerateSigner(ctx, "ca/c/1", keys.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.MasterKeyFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("master key file: %v, want none created", err)
	}
	// Another instance given the key some other way opens the blob.
	db, err := sqlite.Open(ctx, strings.TrimPrefix(cfg.Store, "sqlite:"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	other, err := software.New(mk, db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Signer(ctx, "ca/c/1"); err != nil {
		t.Fatalf("a key sealed under the delivered master key does not open with it: %v", err)
	}

	t.Run("a malformed key stops the start without showing it", func(t *testing.T) {
		t.Setenv(software.EnvMasterKey, "not-base64-secretish")
		cfg := config.Default()
		cfg.StateDir = t.TempDir()
		_, err := Open(ctx, resolved(t, cfg), nil, nil)
		if err == nil || !strings.Contains(err.Error(), software.EnvMasterKey) || strings.Contains(err.Error(), "secretish") {
			t.Fatalf("Open = %v", err)
		}
	})
}

// A PostgreSQL store that cannot be reached is unavailable, and the error
// shows neither the DSN nor its password.
func TestPostgresStoreUnreachable(t *testing.T) {
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	cfg.Store = "postgres://ck:s3cret-pw@/ck?host=" + filepath.Join(t.TempDir(), "nothing") + "&connect_timeout=1"
	_, err := Open(context.Background(), resolved(t, cfg), nil, nil)
	if !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("Open = %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "postgres://") {
		t.Fatalf("the error shows the DSN: %v", err)
	}
}
