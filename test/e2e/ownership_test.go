package e2e

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/testproc"
)

// refuseToServe runs localrun serve on stateDir with the given extra
// arguments and returns its output once it exits. It fails the test when
// localrun is still serving after 30 s: it should have refused to start.
func refuseToServe(t *testing.T, stateDir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "localrun"),
		append([]string{"serve", "--listen", testproc.FreeAddr(t), "--state-dir", stateDir}, args...)...)
	cmd.Dir = stateDir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("localrun exited with %v, want a non-zero exit:\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("localrun started although it should have refused to:\n%s", out.String())
	}
	return out.String()
}

// TestTokenFileOwnership is what localrun refuses in a token file: a member
// or reader line with no project (the empty project would be everybody's),
// a reserved project, and a file others may read. The errors name the line
// or the mode, never the token.
func TestTokenFileOwnership(t *testing.T) {
	const nobodyToken = "e2e-nobody-token-0123456789"
	tests := []struct {
		name  string
		lines []string
		mode  os.FileMode
		want  string
	}{
		{"a member with no project is refused, naming the line",
			[]string{adminToken + ",root,ops,admin", nobodyToken + ",nora,,member"}, 0o600, "token file line 2: the member and reader roles need a project"},
		{"a reader with no project is refused, naming the line",
			[]string{"# readers", nobodyToken + ",rhea,,\"reader\""}, 0o600, "token file line 2: the member and reader roles need a project"},
		{"the shim's reserved key project is refused",
			[]string{nobodyToken + ",mallory,clusterkeys:kms,member"}, 0o600, "token file line 1: projects beginning with clusterkeys: are reserved"},
		{"a group-readable token file is refused",
			[]string{adminToken + ",root,ops,admin"}, 0o640, "has mode 0640"},
		{"a world-readable token file is refused",
			[]string{adminToken + ",root,ops,admin"}, 0o644, "has mode 0644"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state := t.TempDir()
			path := writeTokens(t, state, tt.lines...)
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			out := refuseToServe(t, state)
			if !strings.Contains(out, tt.want) {
				t.Fatalf("output does not say %q:\n%s", tt.want, out)
			}
			for _, tok := range []string{nobodyToken, adminToken} {
				if strings.Contains(out, tok) {
					t.Fatal("a token reached localrun's output")
				}
			}
		})
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// runShimOnce starts the real kmsshim on stateDir with key (and args), waits
// until it listens (it has then created its KEK) and stops it.
func runShimOnce(t *testing.T, stateDir, key string, args ...string) {
	t.Helper()
	sock := filepath.Join(stateDir, key+".sock")
	cmd := exec.Command(kmsshimBinary(t), append([]string{"--listen", "unix://" + sock, "--keys", "software",
		"--state-dir", stateDir, "--key", key}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for !fileExists(sock) {
		select {
		case err := <-done:
			t.Fatalf("kmsshim exited (%v) before listening:\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("kmsshim not listening after 30 s:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// TestShimKeyBelongsToNoOrdinaryToken is the KMS shim's KEK seen through
// the gateway: by default it belongs to the reserved project
// clusterkeys:kms, which no token carries, so members cannot wrap or
// unwrap kube-apiserver's seeds with it; only a global admin can. A KEK a
// shim created with no project (before --key-project had a default) stays
// nobody's: admins only.
func TestShimKeyBelongsToNoOrdinaryToken(t *testing.T) {
	state := t.TempDir()
	runShimOnce(t, state, "kubernetes-kms")
	runShimOnce(t, state, "legacy-kms", "--key-project", "")
	runShimOnce(t, state, "team-kms", "--key-project", "team-a")
	t.Run("the shim refuses a KEK of a real project it was not told to use", func(t *testing.T) {
		cmd := exec.Command(kmsshimBinary(t), "--listen", "unix://"+filepath.Join(state, "refused.sock"), "--keys", "software",
			"--state-dir", state, "--key", "team-kms")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), `KEK "team-kms" belongs to project "team-a"`) {
			t.Fatalf("kmsshim: %v\n%s", err, out)
		}
	})
	s := startServer(t, serverOpts{stateDir: state})

	var key struct {
		ProjectID string `json:"project_id"`
	}
	r := do(t, "GET", s.URL+"/v1/keys/kubernetes-kms", adminToken, nil)
	if r.Status != 200 {
		t.Fatalf("admin shows the shim's KEK: %d %s", r.Status, r.Body)
	}
	r.json(t, &key)
	if key.ProjectID != "clusterkeys:kms" {
		t.Fatalf("the shim's KEK belongs to %q, want clusterkeys:kms", key.ProjectID)
	}

	seed := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	wrapped := map[string]string{}
	for _, k := range []string{"kubernetes-kms", "legacy-kms", "team-kms"} {
		r := do(t, "POST", s.URL+"/v1/keys/"+k+"/wrap", adminToken, map[string]any{"plaintext": seed})
		if r.Status != 200 {
			t.Fatalf("admin wraps with %s: %d %s", k, r.Status, r.Body)
		}
		var w struct {
			Ciphertext string `json:"ciphertext"`
		}
		r.json(t, &w)
		wrapped[k] = w.Ciphertext
	}
	tests := []struct {
		name  string
		token string
		key   string
		op    string
		want  int
	}{
		{"a member may not unwrap with the shim's KEK", memberToken, "kubernetes-kms", "unwrap", 403},
		{"a member may not wrap with the shim's KEK", memberToken, "kubernetes-kms", "wrap", 403},
		{"a member may not rotate the shim's KEK", memberToken, "kubernetes-kms", "rotate", 403},
		{"a member may not unwrap with a KEK of nobody", memberToken, "legacy-kms", "unwrap", 403},
		{"another project's member may not unwrap with a KEK of nobody", otherToken, "legacy-kms", "unwrap", 403},
		{"an admin unwraps with the shim's KEK", adminToken, "kubernetes-kms", "unwrap", 200},
		{"an admin unwraps with a KEK of nobody", adminToken, "legacy-kms", "unwrap", 200},
		{"the key project's member unwraps when the operator names a real project", memberToken, "team-kms", "unwrap", 200},
		{"another project's member may not unwrap with it", otherToken, "team-kms", "unwrap", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body any
			switch tt.op {
			case "wrap":
				body = map[string]any{"plaintext": seed}
			case "unwrap":
				body = map[string]any{"ciphertext": wrapped[tt.key]}
			}
			r := do(t, "POST", s.URL+"/v1/keys/"+tt.key+"/"+tt.op, tt.token, body)
			if r.Status != tt.want {
				t.Fatalf("%d, want %d: %s", r.Status, tt.want, r.Body)
			}
			if tt.want == 200 && tt.op == "unwrap" && !strings.Contains(string(r.Body), seed) {
				t.Fatalf("unwrap did not give the seed back: %s", r.Body)
			}
		})
	}
}
