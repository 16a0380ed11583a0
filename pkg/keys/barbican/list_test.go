package barbican

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/keymanager/v1/secrets"

	"github.com/clusterkeys/clusterkeys/internal/need"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/reconcile"
	"github.com/clusterkeys/clusterkeys/pkg/store/sqlite"
)

var _ reconcile.Custody = (*Custody)(nil)

// startBarbican starts Debian's Barbican for t with test/scripts/barbican.sh
// and returns its endpoint. It skips (fails with CI=true) when Barbican is
// missing and cannot be installed.
func startBarbican(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "..", "test", "scripts", "barbican.sh")
	if _, err := os.Stat("/usr/bin/uwsgi"); err != nil {
		if err := exec.Command("bash", script, "install").Run(); err != nil {
			need.Missing(t, "Barbican is missing: apt-get install barbican-api uwsgi-core uwsgi-plugin-python3 (or make deps)")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:")
	ln.Close()
	dir := t.TempDir()
	out, err := exec.Command("bash", script, "start", dir, port).Output()
	if err != nil {
		t.Fatalf("barbican.sh start: %v", err)
	}
	t.Cleanup(func() {
		if err := exec.Command("bash", script, "stop", dir).Run(); err != nil {
			t.Errorf("barbican.sh stop: %v", err)
		}
	})
	return strings.TrimSpace(string(out))
}

func TestListKeysAndReconcileOnBarbican(t *testing.T) {
	ctx := context.Background()
	endpoint := startBarbican(t)
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "clusterkeys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c, err := Open(Config{Endpoint: endpoint, Project: "p1"}, db)
	if err != nil {
		t.Fatal(err)
	}
	caRef := "ca/c1/1/" + strings.Repeat("a", 32)
	kekRef := "kek/etcd/v1/" + strings.Repeat("b", 16)
	unmapped := "kek/etcd/v2/" + strings.Repeat("c", 16) // its creator died before recording it
	if _, err := c.GenerateSigner(ctx, caRef, keys.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	if err := c.GenerateKEK(ctx, kekRef); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{unmapped, "someone-else"} {
		if _, err := secrets.Create(ctx, c.sc, secrets.CreateOpts{Name: name, SecretType: secrets.OpaqueSecret,
			Payload: "eA==", PayloadContentType: "application/octet-stream", PayloadContentEncoding: "base64"}).Extract(); err != nil {
			t.Fatal(err)
		}
	}
	listed, err := c.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, l := range listed {
		if age := time.Since(l.Created); age < -time.Minute || age > 5*time.Minute {
			t.Errorf("%s created at %v", l.Ref, l.Created)
		}
		refs = append(refs, l.Ref)
	}
	slices.Sort(refs)
	if want := []string{caRef, kekRef, unmapped}; !slices.Equal(refs, want) {
		t.Fatalf("ListKeys = %v, want %v (not the project's other secret)", refs, want)
	}

	// No store row names them: past the window the reconciler destroys
	// all three, the unmapped one by name, and leaves the other secret.
	r := reconcile.New(db, c, reconcile.Options{Logger: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
	res, ran, err := r.RunOnce(ctx)
	if err != nil || !ran || res.Orphans != 3 || res.Destroyed != 3 {
		t.Fatalf("RunOnce = %+v, ran %v, %v; want 3 orphans destroyed", res, ran, err)
	}
	if listed, err := c.ListKeys(ctx); err != nil || len(listed) != 0 {
		t.Fatalf("after reconcile: %v, %v", listed, err)
	}
	if n, err := c.deleteByName(ctx, "someone-else"); err != nil || n != 1 {
		t.Fatalf("the project's other secret: %d, %v; want it left alone", n, err)
	}
}
