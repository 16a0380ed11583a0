package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

func TestPolicy(t *testing.T) {
	admin := Principal{User: "a", Project: "p0", Roles: []string{RoleAdmin}}
	member := Principal{User: "m", Project: "p1", Roles: []string{RoleMember}}
	reader := Principal{User: "r", Project: "p1", Roles: []string{RoleReader}}
	nobody := Principal{User: "n", Project: "p1"}
	tests := []struct {
		name      string
		p         Principal
		project   string
		wantRead  bool
		wantWrite bool
	}{
		{"admin reads and writes any project", admin, "p9", true, true},
		{"member reads and writes its own project", member, "p1", true, true},
		{"member cannot touch another project", member, "p2", false, false},
		{"reader only reads its own project", reader, "p1", true, false},
		{"reader cannot read another project", reader, "p2", false, false},
		{"no role, no access", nobody, "p1", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.CanRead(tt.project); got != tt.wantRead {
				t.Errorf("CanRead = %v", got)
			}
			if got := tt.p.CanWrite(tt.project); got != tt.wantWrite {
				t.Errorf("CanWrite = %v", got)
			}
			if err := tt.p.AuthorizeWrite(tt.project); (err == nil) != tt.wantWrite || (err != nil && !errors.Is(err, api.ErrForbidden)) {
				t.Errorf("AuthorizeWrite = %v", err)
			}
		})
	}
}

func TestParseTokenFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		wantErr string
		wantLen int
	}{
		{"kube-apiserver format with quoted roles", "# comment\n\ntok-0123456789abcdef,alice,p1,\"member,reader\"\n", "", 1},
		{"roles are optional", "tok-0123456789abcdef,alice,p1\n", "", 1},
		{"a short token is refused", "short,alice,p1\n", "line 1: token shorter", 0},
		{"a missing project is refused", "tok-0123456789abcdef,alice\n", "line 1: want token,user,project", 0},
		{"a duplicate token is refused", "tok-0123456789abcdef,a,p\ntok-0123456789abcdef,b,p\n", "line 2: duplicate token", 0},
		{"an empty user is refused", "tok-0123456789abcdef,,p\n", "line 1: empty user", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tf, err := ParseTokenFile(strings.NewReader(tt.content))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "tok-0123456789abcdef") {
					t.Fatal("error message contains the token")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tf.Len() != tt.wantLen {
				t.Fatalf("Len = %d", tf.Len())
			}
		})
	}
}

func TestTokenFileAuthenticate(t *testing.T) {
	tf, err := ParseTokenFile(strings.NewReader("tok-0123456789abcdef,alice,p1,\"member, reader\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := tf.Authenticate(context.Background(), "tok-0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	if p.User != "alice" || p.Project != "p1" || len(p.Roles) != 2 || p.Roles[1] != "reader" {
		t.Fatalf("principal = %+v", p)
	}
	for _, bad := range []string{"", "tok-0123456789abcde", "tok-0123456789abcdef ", "TOK-0123456789ABCDEF"} {
		if _, err := tf.Authenticate(context.Background(), bad); !errors.Is(err, api.ErrUnauthenticated) {
			t.Errorf("Authenticate(%q) = %v, want ErrUnauthenticated", bad, err)
		}
	}
}

func TestEnsureTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "tokens.csv")
	tok, err := EnsureTokenFile(path)
	if err != nil || len(tok) < 32 {
		t.Fatalf("EnsureTokenFile = %q, %v", tok, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, %v", fi.Mode(), err)
	}
	tf, err := LoadTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tf.Authenticate(context.Background(), tok)
	if err != nil || !p.IsAdmin() {
		t.Fatalf("generated token: %+v, %v", p, err)
	}
	again, err := EnsureTokenFile(path)
	if err != nil || again != "" {
		t.Fatalf("second EnsureTokenFile = %q, %v; want no new token", again, err)
	}
}

func FuzzParseTokenFile(f *testing.F) {
	f.Add("tok-0123456789abcdef,alice,p1,\"member,reader\"\n")
	f.Add("\"unterminated,\n")
	f.Fuzz(func(t *testing.T, s string) {
		tf, err := ParseTokenFile(strings.NewReader(s))
		if err == nil {
			_, _ = tf.Authenticate(context.Background(), s)
		}
	})
}
