package kms

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestShimSurvivesTokenRemoval is the fault test at the level of
// the running shim: the SoftHSM2 token holding the KEK disappears under the
// built kmsshim binary. Status and Encrypt must fail (that is what stops
// kube-apiserver's writes), nothing may decrypt, the process must not
// crash; when the token comes back the same process reports healthy within
// 5 s and reads old data again.
func TestShimSurvivesTokenRemoval(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the kmsshim binary")
	}
	ctx := context.Background()
	bin := shimBinary(t)
	env, pin := softHSMToken(t)
	var conf string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "SOFTHSM2_CONF="); ok {
			conf = v
		}
	}
	tokens := filepath.Join(filepath.Dir(conf), "tokens")
	sock := filepath.Join(socketDir(t), "kms.sock")
	p := startBinaryWith(t, bin, sock,
		[]string{"--keys", "pkcs11", "--state-dir", filepath.Join(t.TempDir(), "state")},
		append(env, "CLUSTERKEYS_STATUS_CACHE=500ms"))
	pid := p.cmd.Process.Pid

	c := kubeClient(t, sock)
	st, err := c.Status(ctx)
	if err != nil || st.Healthz != "ok" {
		t.Fatalf("Status before the fault = %+v, %v\n%s", st, err, p.log.String())
	}
	w, state := writeTransformer(t, c)
	stored, raw, pw, key := storeSecret(t, w, "fault")

	// The token goes away.
	away := tokens + ".away"
	if err := os.Rename(tokens, away); err != nil {
		t.Fatal(err)
	}
	restored := false
	t.Cleanup(func() {
		if !restored {
			_ = os.Rename(away, tokens)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := c.Status(ctx)
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Status still answers %+v 15 s after the token went away", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := c.Encrypt(ctx, "fault-uid", make([]byte, 32)); err == nil {
		t.Fatal("Encrypt succeeded with the token gone")
	}
	if got, _, err := coldReader(t, sock, state).TransformFromStorage(ctx, stored, key); err == nil {
		t.Fatalf("a cold read decrypted %d bytes with the token gone", len(got))
	}
	select {
	case err := <-p.done:
		t.Fatalf("kmsshim exited during the fault: %v\n%s", err, p.log.String())
	default:
	}

	// The token comes back: healthy again, same process, old data readable.
	if err := os.Rename(away, tokens); err != nil {
		t.Fatal(err)
	}
	restored = true
	start := time.Now()
	for {
		st, err := c.Status(ctx)
		if err == nil && st.Healthz == "ok" {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("not healthy 5 s after the token came back: %+v, %v\n%s", st, err, p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("healthy again %v after the token came back", time.Since(start).Round(time.Millisecond))
	got, _, err := coldReader(t, sock, state).TransformFromStorage(ctx, stored, key)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("read after recovery: %d bytes, %v", len(got), err)
	}
	if p.cmd.Process.Pid != pid || p.cmd.ProcessState != nil {
		t.Fatal("the shim was restarted")
	}
	log := p.log.String()
	// crypto11's GCM panics on a PKCS#11 error; custody recovers it and
	// logs "call panicked". An unrecovered panic prints a goroutine trace.
	if strings.Contains(log, "\npanic: ") || strings.Contains(log, "goroutine ") {
		t.Fatalf("the shim panicked:\n%s", log)
	}
	for _, secret := range []string{pin, pw} {
		if strings.Contains(log, secret) {
			t.Fatal("the shim's log contains the PIN or the secret")
		}
	}
}
