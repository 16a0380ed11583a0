package all

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/config"
)

// TestTableMatchesRegistered: built without tags, this package links every
// backend, and Backends describes each as it registers itself (its name,
// and a store's prefixes), so that the errors for an unlinked one are
// right.
func TestTableMatchesRegistered(t *testing.T) {
	var stores, custody []string
	for _, b := range Backends {
		if lookup(b.Store, b.Name).Tag != b.Tag {
			t.Errorf("lookup(%s) is another entry", b.Name)
		}
		if u := b.unlinked(); u.Name != b.Name || u.Tag != b.Tag || u.Store != b.Store {
			t.Errorf("%s: unlinked() = %+v", b.Name, u)
		}
		if !b.Store {
			custody = append(custody, b.Name)
			continue
		}
		stores = append(stores, b.Name)
		for _, p := range b.Prefixes {
			if sb, _, ok := config.StoreFor(p + "x"); !ok || sb.Name != b.Name {
				t.Errorf("store %s: prefix %q is taken by %q (registered: %v)", b.Name, p, sb.Name, ok)
			}
		}
		wantTag := "clusterkeys.store." + b.Name
		if b.Tag != wantTag {
			t.Errorf("store %s: tag %s, want %s", b.Name, b.Tag, wantTag)
		}
	}
	var regStores, regCustody []string
	for _, b := range config.StoreBackends() {
		regStores = append(regStores, b.Name)
	}
	for _, b := range config.CustodyBackends() {
		regCustody = append(regCustody, b.Name)
	}
	slices.Sort(stores)
	slices.Sort(custody)
	slices.Sort(regStores)
	slices.Sort(regCustody)
	if !slices.Equal(stores, regStores) || !slices.Equal(custody, regCustody) {
		t.Errorf("Backends lists stores %v and custody %v; registered: %v and %v", stores, custody, regStores, regCustody)
	}
}

// backendsLinked are the names of the backends whose packages pkg (a
// directory) links when built with tags.
func backendsLinked(t *testing.T, gobin, tags, pkg string) []string {
	t.Helper()
	out, err := exec.Command(gobin, "list", "-deps", "-tags", tags, pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps -tags %q %s: %v\n%s", tags, pkg, err, out)
	}
	deps := strings.Fields(string(out))
	var linked []string
	for _, b := range Backends {
		if slices.Contains(deps, b.Package) {
			linked = append(linked, b.Name)
		}
	}
	return linked
}

// TestTagsChooseBackends: a function built with the tags of some backends
// links exactly those (all of a group when none of its tags is given).
func TestTagsChooseBackends(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH, so what the tags link cannot be listed:", err)
	}
	for _, tt := range []struct {
		tags string
		want []string
	}{
		{"lambda.norpc", []string{"sqlite", "postgres", "software", "pkcs11", "barbican"}},
		// make lambda's and make package's default (the SAM deployment).
		{"lambda.norpc clusterkeys.store.postgres clusterkeys.keys.software", []string{"postgres", "software"}},
		{"clusterkeys.store.sqlite", []string{"sqlite", "software", "pkcs11", "barbican"}},
		{"clusterkeys.keys.pkcs11 clusterkeys.keys.barbican", []string{"sqlite", "postgres", "pkcs11", "barbican"}},
		{"clusterkeys.store.sqlite clusterkeys.store.postgres clusterkeys.keys.barbican", []string{"sqlite", "postgres", "barbican"}},
	} {
		for _, fn := range []string{"signcsr", "keywrap"} {
			if got := backendsLinked(t, gobin, tt.tags, "../../../functions/"+fn); !slices.Equal(got, tt.want) {
				t.Errorf("functions/%s with -tags %q links %v, want %v", fn, tt.tags, got, tt.want)
			}
		}
	}
}

// TestUnlinkedBackendRefusedAtStart builds signcsr as make lambda does by
// default (PostgreSQL and software custody only) and starts it with
// configurations naming a backend it lacks: it exits at once, before
// asking the Runtime API for an event, with the build tag to use, and
// without the store's password.
func TestUnlinkedBackendRefusedAtStart(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH, so no bootstrap can be built:", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bootstrap")
	build := exec.Command(gobin, "build", "-tags", "lambda.norpc clusterkeys.store.postgres clusterkeys.keys.software", "-o", bin, "../../../functions/signcsr")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build signcsr: %v\n%s", err, out)
	}
	const pw = "s3cret-pw"
	for _, tt := range []struct {
		name string
		env  []string
		want string
	}{
		{"the default SQLite store", nil,
			`signcsr: config: --store "sqlite:"…: this binary is built without the sqlite store (it links postgres://…); build it with -tags clusterkeys.store.sqlite to link it`},
		{"pkcs11 custody", []string{"CLUSTERKEYS_STORE=postgres://ck:" + pw + "@127.0.0.1:1/ck", "CLUSTERKEYS_KEYS=pkcs11"},
			`signcsr: config: --keys "pkcs11": this binary is built without the pkcs11 custody (it links software); build it with -tags clusterkeys.keys.pkcs11 to link it`},
		{"barbican custody", []string{"CLUSTERKEYS_STORE=postgres://ck:" + pw + "@127.0.0.1:1/ck", "CLUSTERKEYS_KEYS=barbican"},
			`-tags clusterkeys.keys.barbican`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin)
			// A Runtime API that answers nothing: the bootstrap must not get
			// that far.
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "CLUSTERKEYS_STATE_DIR=" + dir, "AWS_LAMBDA_RUNTIME_API=127.0.0.1:1"}, tt.env...)
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit %v, want status 1:\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("output %q, want it to hold %q", out, tt.want)
			}
			if strings.Contains(string(out), pw) {
				t.Errorf("the output repeats the store's password: %s", out)
			}
		})
	}
}
