package e2e

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/testproc"
	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// custodyState is what software custody holds next to what the store names.
type custodyState struct {
	blobs   []string // refs of the key blobs
	live    []string // refs the store needs
	retired []string // refs of retired CA generations still in custody
	orphans []string // blobs no row names
}

// readCustody opens the state's store (the server is stopped) and compares
// the key blobs with the refs the store names.
func readCustody(t *testing.T, state string) custodyState {
	t.Helper()
	ctx := context.Background()
	db, err := openStateStore(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	bs, err := db.ListBlobs(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	refs, err := db.KeyRefs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return classifyCustody(bs, refs)
}

func classifyCustody(bs []store.Blob, refs store.KeyRefs) custodyState {
	var s custodyState
	s.live = slices.Sorted(slices.Values(refs.Live))
	for _, b := range bs {
		s.blobs = append(s.blobs, b.Ref)
		switch {
		case slices.Contains(refs.Live, b.Ref):
		case slices.Contains(refs.Retired, b.Ref):
			s.retired = append(s.retired, b.Ref)
		default:
			s.orphans = append(s.orphans, b.Ref)
		}
	}
	slices.Sort(s.blobs)
	return s
}

// openCustody opens a stopped server's store and its software custody, to
// plant what a crash could leave. The caller closes db.
func openCustody(t *testing.T, state string) (stateStore, *software.Custody) {
	t.Helper()
	ctx := context.Background()
	db, err := openStateStore(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := software.LoadOrCreateMasterKey(ctx, filepath.Join(state, "master.key"), db)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	custody, err := software.New(mk, db)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return db, custody
}

func count(refs []string, prefix string) int {
	n := 0
	for _, r := range refs {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

// TestReconcilerCollectsWhatACrashLeaves SIGKILLs localrun during
// concurrent rekeys and KEK rotations, restarts it with a short safety
// window, and checks that custody then holds exactly the keys the store
// names: no orphan of an interrupted create, no retired CA key.
func TestReconcilerCollectsWhatACrashLeaves(t *testing.T) {
	state := t.TempDir()
	s := startServer(t, serverOpts{stateDir: state})
	createCA(t, s, memberToken, "rc-1", nil)
	createCA(t, s, memberToken, "rc-2", nil)
	for _, k := range []string{"rc-k1", "rc-k2"} {
		if r := do(t, "POST", s.URL+"/v1/keys", memberToken, map[string]any{"name": k}); r.Status != 201 {
			t.Fatalf("create KEK %s: %d %s", k, r.Status, r.Body)
		}
	}
	var (
		rekeys, rotates atomic.Int64
		wg              sync.WaitGroup
		stop            = make(chan struct{})
	)
	work := func(url string, n *atomic.Int64) {
		for {
			select {
			case <-stop:
				return
			default:
			}
			r, err := tryDo("POST", url, memberToken, `{}`)
			if err != nil {
				return // the server is gone
			}
			if r.Status == 200 {
				n.Add(1)
			}
		}
	}
	for _, c := range []string{"rc-1", "rc-2"} {
		for range 2 {
			wg.Go(func() { work(s.URL+"/v1/clusters/"+c+"/ca/rekey", &rekeys) })
		}
	}
	for _, k := range []string{"rc-k1", "rc-k2"} {
		for range 2 {
			wg.Go(func() { work(s.URL+"/v1/keys/"+k+"/rotate", &rotates) })
		}
	}
	time.Sleep(1500 * time.Millisecond)
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = s.cmd.Wait()
	close(stop)
	wg.Wait()
	if rekeys.Load() == 0 || rotates.Load() == 0 {
		t.Fatalf("%d rekeys and %d rotations answered before the kill: the test proves nothing", rekeys.Load(), rotates.Load())
	}

	crashed := readCustody(t, state)
	// What a crash can leave, made certain rather than left to timing: a
	// key generated whose row was never written (a CA key and a KEK), and
	// the key of a retired generation that the rekey had no time to
	// destroy (recreated under its own ref, as if never destroyed).
	ctx := context.Background()
	db, custody := openCustody(t, state)
	refs, err := db.KeyRefs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs.Retired) == 0 {
		t.Fatal("no retired generation after the rekeys")
	}
	injected := []string{"ca/rc-1/999/" + strings.Repeat("ab", 16), refs.Retired[0]}
	for _, ref := range injected {
		if _, err := custody.GenerateSigner(ctx, ref, keys.ECDSAP256); err != nil && !errors.Is(err, api.ErrConflict) {
			t.Fatalf("inject %s: %v", ref, err)
		}
	}
	if err := custody.GenerateKEK(ctx, "kek/rc-k1/v999/"+strings.Repeat("cd", 8)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before := readCustody(t, state)
	if len(before.orphans) < 2 || len(before.retired) < 1 {
		t.Fatalf("before the restart: %d orphans, %d retired keys; the injection failed", len(before.orphans), len(before.retired))
	}

	// Restart with a short window: the start-up run keeps the fresh
	// orphans (younger than the window), a later run collects them.
	s2 := startServer(t, serverOpts{stateDir: state, args: []string{"--reconcile-interval", "1s", "--orphan-safety-window", "2s"}})
	deadline := time.Now().Add(60 * time.Second)
	var after custodyState
	for {
		// The server keeps running: read through a second handle (WAL).
		after = readCustody(t, state)
		if len(after.orphans) == 0 && len(after.retired) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s custody still holds %d orphans %v and %d retired keys %v",
				len(after.orphans), after.orphans, len(after.retired), after.retired)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !slices.Equal(after.blobs, after.live) {
		t.Fatalf("custody holds %v, the store names %v", after.blobs, after.live)
	}
	// Every CA and KEK still works on what is left.
	for _, c := range []string{"rc-1", "rc-2"} {
		sign(t, s2, memberToken, c, map[string]any{"csr": newCSR(t, p256(t), "alice", nil), "profile": "client"})
	}
	for _, k := range []string{"rc-k1", "rc-k2"} {
		if r := do(t, "POST", s2.URL+"/v1/keys/"+k+"/wrap", memberToken, map[string]any{"plaintext": "c2VlZA=="}); r.Status != 200 {
			t.Fatalf("wrap with %s: %d %s", k, r.Status, r.Body)
		}
	}
	t.Logf("before SIGKILL: %d rekeys, %d rotations answered", rekeys.Load(), rotates.Load())
	t.Logf("left by the crash: %d blobs, %d live, %d retired CA keys, %d orphans (%d CA, %d KEK)",
		len(crashed.blobs), len(crashed.live), len(crashed.retired), len(crashed.orphans),
		count(crashed.orphans, "ca/"), count(crashed.orphans, "kek/"))
	t.Logf("with injected leftovers: %d retired CA keys, %d orphans; after the reconciler: %d blobs = %d live refs",
		len(before.retired), len(before.orphans), len(after.blobs), len(after.live))
}

// TestShimCollectsOrphansToo: the KMS shim is a long-running process over
// the same state as localrun, so it runs the reconciler as well: an orphan
// KEK left in custody is destroyed while the shim serves, and the shim's
// own KEK is kept.
func TestShimCollectsOrphansToo(t *testing.T) {
	state := t.TempDir()
	// The shim creates its KEK (and the store) and stops.
	runShimOnce(t, state, "shim-kek")

	ctx := context.Background()
	db, custody := openCustody(t, state)
	orphan := "kek/shim-kek/v999/" + strings.Repeat("ef", 8)
	if err := custody.GenerateKEK(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if before := readCustody(t, state); !slices.Contains(before.orphans, orphan) {
		t.Fatalf("the injected orphan is not in custody: %+v", before)
	}

	sock := filepath.Join(state, "kms.sock")
	cmd := exec.Command(kmsshimBinary(t), "--listen", "unix://"+sock, "--keys", "software",
		"--state-dir", state, "--key", "shim-kek", "--reconcile-interval", "1s", "--orphan-safety-window", "1s")
	var out testproc.Output
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	deadline := time.Now().Add(60 * time.Second)
	for {
		after := readCustody(t, state)
		if len(after.orphans) == 0 {
			if len(after.live) == 0 || !slices.Equal(after.blobs, after.live) {
				t.Fatalf("after the shim's reconciler custody holds %v, the store names %v", after.blobs, after.live)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s the shim left orphans %v; its log:\n%s", after.orphans, out.String())
		}
		time.Sleep(300 * time.Millisecond)
	}
}
