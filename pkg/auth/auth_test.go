package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

func TestPolicy(t *testing.T) {
	admin := Principal{User: "a", Project: "p0", Roles: []string{RoleAdmin}}
	member := Principal{User: "m", Project: "p1", Roles: []string{RoleMember}}
	reader := Principal{User: "r", Project: "p1", Roles: []string{RoleReader}}
	nobody := Principal{User: "n", Project: "p1"}
	noProjectMember := Principal{User: "d", Roles: []string{RoleMember, RoleReader}}
	noProjectAdmin := Principal{User: "s", Roles: []string{RoleAdmin}}
	projectAdmin := Principal{User: "pa", Project: "p1", Roles: []string{RoleAdmin}, AdminProjectOnly: true}
	domainAdmin := Principal{User: "da", Roles: []string{RoleAdmin}, AdminProjectOnly: true}
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
		{"a member with no project does not own the empty project", noProjectMember, "", false, false},
		{"a member with no project owns no other project", noProjectMember, "p1", false, false},
		{"a global admin with no project reads and writes the empty project", noProjectAdmin, "", true, true},
		{"a project-scoped admin acts as a member of its project", projectAdmin, "p1", true, true},
		{"a project-scoped admin cannot touch another project", projectAdmin, "p2", false, false},
		{"a project-scoped admin cannot touch the empty project", projectAdmin, "", false, false},
		{"an admin with no project and a limited role owns nothing", domainAdmin, "", false, false},
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
			if err := tt.p.AuthorizeRead(tt.project); (err == nil) != tt.wantRead || (err != nil && !errors.Is(err, api.ErrForbidden)) {
				t.Errorf("AuthorizeRead = %v", err)
			}
		})
	}
}

func TestIsAdminOnlyForAGlobalAdmin(t *testing.T) {
	if !(Principal{Roles: []string{RoleAdmin}}).IsAdmin() {
		t.Error("a token-file admin is a global admin")
	}
	if (Principal{Project: "p1", Roles: []string{RoleAdmin}, AdminProjectOnly: true}).IsAdmin() {
		t.Error("an admin of one project is a global admin")
	}
}

func TestAuthorizeCreate(t *testing.T) {
	tests := []struct {
		name        string
		p           Principal
		project     string
		wantProject string
		wantCode    string // "" when allowed
	}{
		{"a member creates in its own project by default", Principal{User: "m", Project: "p1", Roles: []string{RoleMember}}, "", "p1", ""},
		{"a member names its own project", Principal{User: "m", Project: "p1", Roles: []string{RoleMember}}, "p1", "p1", ""},
		{"a member may not create in another project", Principal{User: "m", Project: "p1", Roles: []string{RoleMember}}, "p2", "", api.CodeForbidden},
		{"a reader may not create", Principal{User: "r", Project: "p1", Roles: []string{RoleReader}}, "", "", api.CodeForbidden},
		{"a member with no project may create nothing", Principal{User: "d", Roles: []string{RoleMember}}, "", "", api.CodeProjectRequired},
		{"a member with no project may not name a project either", Principal{User: "d", Roles: []string{RoleMember}}, "p1", "", api.CodeProjectRequired},
		{"a limited admin with no project may create nothing", Principal{User: "da", Roles: []string{RoleAdmin}, AdminProjectOnly: true}, "", "", api.CodeProjectRequired},
		{"a project-scoped admin creates in its project", Principal{User: "pa", Project: "p1", Roles: []string{RoleAdmin}, AdminProjectOnly: true}, "", "p1", ""},
		{"a project-scoped admin may not create in another project", Principal{User: "pa", Project: "p1", Roles: []string{RoleAdmin}, AdminProjectOnly: true}, "p2", "", api.CodeForbidden},
		{"a global admin creates in any project", Principal{User: "a", Project: "ops", Roles: []string{RoleAdmin}}, "p2", "p2", ""},
		{"a global admin with no project creates an object of nobody", Principal{User: "a", Roles: []string{RoleAdmin}}, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.p.AuthorizeCreate(tt.project)
			if tt.wantCode == "" {
				if err != nil || got != tt.wantProject {
					t.Fatalf("AuthorizeCreate = %q, %v; want %q", got, err, tt.wantProject)
				}
				return
			}
			e := api.ErrorFor(err)
			if err == nil || e.Status != 403 || e.Code != tt.wantCode || !errors.Is(err, api.ErrForbidden) {
				t.Fatalf("AuthorizeCreate = %q, %v (%d %s); want 403 %s", got, err, e.Status, e.Code, tt.wantCode)
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
		{"an admin needs no project", "tok-0123456789abcdef,root,,admin\n", "", 1},
		{"a line with no role needs no project", "tok-0123456789abcdef,idle,\n", "", 1},
		{"a short token is refused", "short,alice,p1\n", "line 1: token shorter", 0},
		{"a missing project is refused", "tok-0123456789abcdef,alice\n", "line 1: want token,user,project", 0},
		{"a duplicate token is refused", "tok-0123456789abcdef,a,p\ntok-0123456789abcdef,b,p\n", "line 2: duplicate token", 0},
		{"an empty user is refused", "tok-0123456789abcdef,,p\n", "line 1: empty user", 0},
		{"a member with no project is refused", "tok-00000000000000000,root,,admin\ntok-0123456789abcdef,alice,,member\n", "line 2: the member and reader roles need a project", 0},
		{"a reader with a blank project is refused", "tok-0123456789abcdef,rita, ,\"reader\"\n", "line 1: the member and reader roles need a project", 0},
		{"a reserved project is refused", "tok-0123456789abcdef,alice,clusterkeys:kms,member\n", "line 1: projects beginning with clusterkeys: are reserved", 0},
		{"a reserved project is refused for an admin too", "tok-0123456789abcdef,root,clusterkeys:x,admin\n", "line 1: projects beginning with clusterkeys: are reserved", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tf, err := ParseTokenFile(strings.NewReader(tt.content))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "tok-0") {
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

func TestLoadTokenFileRefusesLoosePermissions(t *testing.T) {
	const content = "tok-0123456789abcdef,alice,p1,member\n"
	tests := []struct {
		name    string
		mode    os.FileMode
		wantErr string
	}{
		{"owner only is accepted", 0o600, ""},
		{"owner read-only is accepted", 0o400, ""},
		{"group-readable is refused", 0o640, "mode 0640"},
		{"world-readable is refused", 0o644, "mode 0644"},
		{"group-writable is refused", 0o620, "mode 0620"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.csv")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			tf, err := LoadTokenFile(path)
			if tt.wantErr == "" {
				if err != nil || tf.Len() != 1 {
					t.Fatalf("LoadTokenFile = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "chmod 600") {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "tok-0") {
				t.Fatal("error message contains the token")
			}
		})
	}
	t.Run("a directory is refused", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadTokenFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("err = %v", err)
		}
	})
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

// tokenFileReasons are the only texts a token file error may carry after
// its line number: nothing read from the file ever reaches an error.
var tokenFileReasons = map[string]bool{
	errMalformed: true, errFields: true, errShortToken: true, errEmptyUser: true,
	errNoProject: true, errReservedProject: true, errDuplicate: true,
}

var lineErrorRE = regexp.MustCompile(`^token file line [0-9]+: (.*)$`)

func FuzzParseTokenFile(f *testing.F) {
	f.Add("tok-0123456789abcdef,alice,p1,\"member,reader\"\n")
	f.Add("\"unterminated,\n")
	f.Add("# c\n tok-0123456789abcdef , root ,, admin\n\"#tok-0123456789abcdef\",\"u\"\"q\",\"p\",\"r1, r2\",r3\n")
	f.Add("tok-0123456789abcdef,alice,,member\n")
	f.Add("tok-0123456789abcdef,alice,clusterkeys:kms,member\n")
	f.Add("\"tok-0123456789\r\nabcdef\",alice,p1\n")
	f.Fuzz(func(t *testing.T, s string) {
		recs, err := parseRecords(strings.NewReader(s))
		if err != nil {
			// Property 1: an error is a line number and a fixed reason,
			// so no token (nor any other text of the file) is in it.
			m := lineErrorRE.FindStringSubmatch(err.Error())
			if m == nil || !tokenFileReasons[m[1]] {
				t.Fatalf("error %q is not a line number and a fixed reason", err)
			}
			if _, err := ParseTokenFile(strings.NewReader(s)); err == nil {
				t.Fatal("ParseTokenFile accepted what parseRecords refused")
			}
			return
		}
		// Property 2: the parsed entries, written back, read back the same.
		var b strings.Builder
		for _, r := range recs {
			b.WriteString(formatLine(r.token, r.principal))
		}
		again, err := parseRecords(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", b.String(), err)
		}
		if len(again) != len(recs) {
			t.Fatalf("re-parse: %d entries, want %d", len(again), len(recs))
		}
		tf, err := ParseTokenFile(strings.NewReader(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range recs {
			if again[i].token != r.token || !samePrincipal(again[i].principal, r.principal) {
				t.Fatalf("entry %d: %+v, want %+v", i, again[i].principal, r.principal)
			}
			// Property 3: every token authenticates as its own line.
			p, err := tf.Authenticate(context.Background(), r.token)
			if err != nil || !samePrincipal(p, r.principal) {
				t.Fatalf("entry %d authenticates as %+v, %v", i, p, err)
			}
			// Property 4: no member or reader without a project, no
			// reserved project.
			if (p.Project == "" && p.hasAny(RoleMember, RoleReader)) || strings.HasPrefix(p.Project, ReservedPrefix) {
				t.Fatalf("entry %d was accepted: %+v", i, p)
			}
		}
	})
}

func samePrincipal(a, b Principal) bool {
	return a.User == b.User && a.Project == b.Project && a.AdminProjectOnly == b.AdminProjectOnly && slices.Equal(a.Roles, b.Roles)
}
