package e2e

import (
	"archive/zip"
	"bytes"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/intrinsics"
	"github.com/spf13/pflag"

	"github.com/clusterkeys/clusterkeys/pkg/api/openapi"
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/functions"
	"github.com/clusterkeys/clusterkeys/pkg/keys/pkcs11"
	"github.com/clusterkeys/clusterkeys/pkg/keys/software"
)

// envMasterKey is software custody's master key delivered in the
// environment.
const envMasterKey = software.EnvMasterKey

// envOnly are the CLUSTERKEYS_* variables that set no flag: secrets, which
// are never flags.
var envOnly = []string{pkcs11.EnvPIN, envMasterKey}

// notInLambda are the flags the SAM template deliberately leaves at their
// defaults, with why. A flag added to pkg/config must be set in the template
// or listed here, so that a new setting is never silently missing in infra.
var notInLambda = map[string]string{
	"listen":                 "the Lambda runtime API serves requests, not a socket",
	"tls-cert-file":          "API Gateway terminates TLS",
	"tls-private-key-file":   "API Gateway terminates TLS",
	"insecure-http":          "API Gateway terminates TLS",
	"store-file":             "the DSN comes in CLUSTERKEYS_STORE (resolved from a secret at deploy)",
	"master-key-file":        "the master key comes in CLUSTERKEYS_MASTER_KEY",
	"pkcs11-pin-file":        "the PIN comes in CLUSTERKEYS_PKCS11_PIN",
	"pkcs11-call-timeout":    "the default fits the 30 s function timeout",
	"barbican-endpoint":      "taken from the Keystone catalog of OSCloud",
	"barbican-project":       "only without Keystone (tests)",
	"auth-cache-ttl":         "default; a sandbox's cache lives as long as the sandbox",
	"reconcile-interval":     "the functions run no reconciler (localrun or kmsshim do)",
	"orphan-safety-window":   "the functions run no reconciler",
	"log-level":              "default info",
	"max-in-flight":          "a sandbox serves one request at a time",
	"max-in-flight-validate": "a sandbox serves one request at a time",
	"max-auth-failures":      "default; per sandbox, throttle at API Gateway",
	"auth-failure-window":    "default",
}

// samFunctions are the routes each Lambda function serves, from the table
// in pkg/functions that functions/<name>/main.go and localrun build from.
func samFunctions() map[string][]string {
	out := map[string][]string{}
	for _, f := range functions.All {
		var patterns []string
		for _, r := range f.Routes(&functions.Deps{}) {
			patterns = append(patterns, r.Pattern)
		}
		if f.Name == openAPIFunction {
			patterns = append(patterns, openapi.Route().Pattern)
		}
		slices.Sort(patterns)
		out[f.Name] = patterns
	}
	return out
}

// openAPIFunction answers GET /openapi.json on the deployed API: every
// gateway serves the document, and this function opens no store.
const openAPIFunction = "validatebundle"

// isStoreFunction is whether the function opens the store and key custody
// (Store in pkg/functions); validatebundle opens neither.
func isStoreFunction(name string) bool {
	f, err := functions.Lookup(name)
	return err == nil && f.Store
}

// samFunction is one function resource of the template, resolved.
type samFunction struct {
	routes []string          // "METHOD /path", sorted
	env    map[string]string // Globals' variables, then the function's
	arch   []string
}

// repoRoot is the main module's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// parseSAM parses infra/sam/template.yaml with goformation, the parameters
// set to params, and returns its functions by name (the zip CodeUri names).
func parseSAM(t *testing.T, params map[string]any) map[string]samFunction {
	t.Helper()
	// goformation resolves a CommaDelimitedList's Ref to its default as a
	// string, not a list: give the VPC parameters as lists.
	params = maps.Clone(params)
	params["SubnetIds"] = []any{"subnet-1", "subnet-2"}
	params["SecurityGroupIds"] = []any{"sg-1"}
	tpl, err := goformation.OpenWithOptions(filepath.Join(repoRoot(t), "infra", "sam", "template.yaml"),
		&intrinsics.ProcessorOptions{ParameterOverrides: params, EvaluateConditions: true})
	if err != nil {
		t.Fatalf("template.yaml: %v", err)
	}
	for name := range params {
		if _, ok := tpl.Parameters[name]; !ok {
			t.Fatalf("the test sets parameter %s, which the template does not declare", name)
		}
	}
	glob, err := tpl.GetServerlessGlobalFunction()
	if err != nil {
		t.Fatalf("template.yaml Globals: %v", err)
	}
	zipURI := regexp.MustCompile(`^\.\./\.\./bin/package/(\w+)\.zip$`)
	out := map[string]samFunction{}
	for res, fn := range tpl.GetAllServerlessFunctionResources() {
		if fn.CodeUri == nil || fn.CodeUri.String == nil || !zipURI.MatchString(*fn.CodeUri.String) {
			t.Fatalf("%s: CodeUri %v is not ../../bin/package/<function>.zip (make package)", res, fn.CodeUri)
		}
		name := zipURI.FindStringSubmatch(*fn.CodeUri.String)[1]
		f := samFunction{env: map[string]string{}, arch: fn.Architectures}
		if f.arch == nil && glob.Architectures != nil {
			f.arch = *glob.Architectures
		}
		if glob.Environment != nil {
			for k, v := range glob.Environment.Variables {
				f.env[k] = v
			}
		}
		if fn.Environment != nil {
			for k, v := range fn.Environment.Variables {
				f.env[k] = v
			}
		}
		// AWS::NoValue resolves to nothing: the variable is not set.
		for k, v := range f.env {
			if v == "" {
				delete(f.env, k)
			}
		}
		for ev, src := range fn.Events {
			if src.Type != "HttpApi" || src.Properties == nil || src.Properties.HttpApiEvent == nil {
				t.Errorf("%s: event %s is a %s, not an HttpApi route", res, ev, src.Type)
				continue
			}
			e := src.Properties.HttpApiEvent
			if e.Method == nil || e.Path == nil {
				t.Errorf("%s: event %s has no Method or Path", res, ev)
				continue
			}
			f.routes = append(f.routes, *e.Method+" "+*e.Path)
		}
		slices.Sort(f.routes)
		if _, dup := out[name]; dup {
			t.Errorf("two resources deploy %s", name)
		}
		out[name] = f
	}
	if _, err := tpl.GetServerlessHttpApiWithName("Api"); err != nil {
		t.Errorf("template.yaml: %v", err)
	}
	return out
}

// TestSAMTemplateRoutesEveryFunction checks infra/sam/template.yaml against
// the functions' route table (pkg/functions): every route a function serves is an
// HttpApi event of that function, and nothing else is; every function under
// functions/ (but the KMS shim, which is no Lambda function) is deployed.
func TestSAMTemplateRoutesEveryFunction(t *testing.T) {
	served := samFunctions()
	deployed := parseSAM(t, map[string]any{"StoreDSN": "postgres://ck@db/ck"})
	for fn, want := range served {
		got, ok := deployed[fn]
		if !ok {
			t.Errorf("the template does not deploy %s", fn)
			continue
		}
		if !slices.Equal(got.routes, want) {
			t.Errorf("%s: the template routes %v, the function serves %v", fn, got.routes, want)
		}
	}
	for fn := range deployed {
		if _, ok := served[fn]; !ok {
			t.Errorf("the template deploys %s, which is no function this test knows", fn)
		}
	}
	dirs, err := os.ReadDir(filepath.Join(repoRoot(t), "functions"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, ok := served[d.Name()]; !ok && d.IsDir() && d.Name() != "kmsshim" {
			t.Errorf("functions/%s is not deployed by infra/sam/template.yaml (nor known to this test)", d.Name())
		}
	}
}

// TestSAMTemplateEnvironment checks the template's variables against the
// real flags, for each custody: every CLUSTERKEYS_* variable sets a flag (or
// is one of the secrets that are never flags) and takes the value given,
// every flag is set or deliberately left out (notInLambda), the store is
// always the PostgreSQL one given (never the SQLite default, which would give
// every sandbox its own database), and custody gets what it needs.
func TestSAMTemplateEnvironment(t *testing.T) {
	const (
		dsn       = "postgres://ck:pw@db.example:5432/ck?sslmode=verify-full&pool_max_conns=2"
		storeArn  = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ck-dsn"
		masterKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	)
	resolved := func(arn string) string { return "{{resolve:secretsmanager:" + arn + ":SecretString}}" }
	tests := []struct {
		name   string
		params map[string]any
		// want are variables every store function must have, with value.
		want map[string]string
		arch string
	}{
		{
			name:   "software from NoEcho parameters",
			params: map[string]any{"StoreDSN": dsn, "Keys": "software", "MasterKey": masterKey},
			want:   map[string]string{"CLUSTERKEYS_STORE": dsn, "CLUSTERKEYS_KEYS": "software", envMasterKey: masterKey},
			arch:   "x86_64",
		},
		{
			name:   "software from secrets, arm64",
			params: map[string]any{"StoreSecretArn": storeArn, "Keys": "software", "MasterKeySecretArn": "arn:mk", "Architecture": "arm64"},
			want:   map[string]string{"CLUSTERKEYS_STORE": resolved(storeArn), envMasterKey: resolved("arn:mk")},
			arch:   "arm64",
		},
		{
			name: "pkcs11",
			params: map[string]any{"StoreSecretArn": storeArn, "Keys": "pkcs11", "PKCS11Module": "/opt/hsm/lib/libpkcs11.so",
				"PKCS11TokenLabel": "ck", "PKCS11PinSecretArn": "arn:pin", "ConfigLayerArn": "arn:layer"},
			want: map[string]string{"CLUSTERKEYS_KEYS": "pkcs11", "CLUSTERKEYS_PKCS11_MODULE": "/opt/hsm/lib/libpkcs11.so",
				"CLUSTERKEYS_PKCS11_TOKEN_LABEL": "ck", pkcs11.EnvPIN: resolved("arn:pin")},
			arch: "x86_64",
		},
		{
			name: "barbican with keystone",
			params: map[string]any{"StoreDSN": dsn, "Keys": "barbican", "Auth": "keystone", "OSCloud": "prod",
				"PublicURL": "https://keys.example.com"},
			want: map[string]string{"CLUSTERKEYS_KEYS": "barbican", "CLUSTERKEYS_AUTH": "keystone", "CLUSTERKEYS_OS_CLOUD": "prod",
				"OS_CLIENT_CONFIG_FILE": "/opt/clusterkeys/clouds.yaml"},
			arch: "x86_64",
		},
	}
	used := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fns := parseSAM(t, tt.params)
			for name, f := range fns {
				if !slices.Equal(f.arch, []string{tt.arch}) {
					t.Errorf("%s: Architectures %v, want [%s]", name, f.arch, tt.arch)
				}
				c := config.Default()
				fs := pflag.NewFlagSet("lambda", pflag.ContinueOnError)
				c.BindFlags(fs)
				for k := range f.env {
					flag, ok := strings.CutPrefix(k, config.EnvPrefix)
					switch {
					case !ok:
						if k != "OS_CLIENT_CONFIG_FILE" {
							t.Errorf("%s sets %s, neither CLUSTERKEYS_* nor OS_CLIENT_CONFIG_FILE", name, k)
						}
					case slices.Contains(envOnly, k):
						used[k] = true
					default:
						flag = strings.ToLower(strings.ReplaceAll(flag, "_", "-"))
						if fs.Lookup(flag) == nil || config.EnvName(flag) != k {
							t.Errorf("%s sets %s, which is no flag's variable (config.EnvName)", name, k)
						}
						used[flag] = true
					}
				}
				if err := config.ApplyEnv(fs, func(k string) (string, bool) { v, ok := f.env[k]; return v, ok }); err != nil {
					t.Errorf("%s: %v", name, err)
				}
				isStore := isStoreFunction(name)
				if !isStore {
					for _, k := range []string{"CLUSTERKEYS_STORE", envMasterKey, pkcs11.EnvPIN} {
						if _, ok := f.env[k]; ok {
							t.Errorf("%s opens no store or custody, yet gets %s", name, k)
						}
					}
					continue
				}
				for k, v := range tt.want {
					if f.env[k] != v {
						t.Errorf("%s: %s is %q, want %q", name, k, f.env[k], v)
					}
				}
				if !strings.HasPrefix(c.Store, "postgres://") && !strings.HasPrefix(c.Store, "postgresql://") && !strings.HasPrefix(c.Store, "{{resolve:secretsmanager:") {
					t.Errorf("%s: store %q is neither a PostgreSQL URI nor a secret resolved at deploy", name, c.Store)
				}
				if c.Keys == "software" && f.env[envMasterKey] == "" {
					t.Errorf("%s: software custody without %s: every sandbox would make its own master key", name, envMasterKey)
				}
				if _, ok := f.env["CLUSTERKEYS_STATE_DIR"]; ok && !strings.HasPrefix(c.StateDir, "/tmp/") {
					t.Errorf("%s: state dir %q: Lambda can write only under /tmp", name, c.StateDir)
				}
			}
		})
	}
	c := config.Default()
	fs := pflag.NewFlagSet("lambda", pflag.ContinueOnError)
	c.BindFlags(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		_, skip := notInLambda[f.Name]
		switch {
		case used[f.Name] && skip:
			t.Errorf("flag --%s is set in the template and listed in notInLambda", f.Name)
		case !used[f.Name] && !skip:
			t.Errorf("flag --%s (%s) is neither set in infra/sam/template.yaml nor listed in notInLambda", f.Name, config.EnvName(f.Name))
		}
	})
	for _, k := range envOnly {
		if !used[k] {
			t.Errorf("no custody of the template sets %s", k)
		}
	}
}

// TestSAMPackageReproducible runs `make package` for one function in two
// copies of the sources at paths of different lengths: the zips must be the
// same bytes and hold exactly an executable bootstrap.
func TestSAMPackageReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds validatebundle twice")
	}
	for _, tool := range []string{"make", "git", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (apt-get install %s)", tool, tool)
		}
	}
	root := repoRoot(t)
	files, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	var zips [][]byte
	for _, dir := range []string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "a", "much", "longer", "clone", "path")} {
		for _, name := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
			if strings.HasPrefix(name, "test/") || strings.HasPrefix(name, "bin/") {
				continue // not part of any function
			}
			b, err := os.ReadFile(filepath.Join(root, name))
			if os.IsNotExist(err) {
				continue // deleted in the worktree
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command("make", "package", "ARCH=amd64", "PACKAGE_FUNCTIONS=validatebundle")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make package in %s: %v\n%s", dir, err, out)
		}
		t.Logf("%s", out)
		z, err := os.ReadFile(filepath.Join(dir, "bin", "package", "validatebundle.zip"))
		if err != nil {
			t.Fatal(err)
		}
		zips = append(zips, z)
	}
	if !bytes.Equal(zips[0], zips[1]) {
		t.Fatalf("two copies at different paths give different zips (%d and %d bytes)", len(zips[0]), len(zips[1]))
	}
	zr, err := zip.NewReader(bytes.NewReader(zips[0]), int64(len(zips[0])))
	if err != nil {
		t.Fatal(err)
	}
	if len(zr.File) != 1 || zr.File[0].Name != "bootstrap" {
		var names []string
		for _, f := range zr.File {
			names = append(names, f.Name)
		}
		t.Fatalf("the zip holds %v, want exactly [bootstrap]", names)
	}
	f := zr.File[0]
	if f.Mode() != 0o755 {
		t.Errorf("bootstrap has mode %v, want -rwxr-xr-x", f.Mode())
	}
	r, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	head := make([]byte, 4)
	if _, err := io.ReadFull(r, head); err != nil || string(head) != "\x7fELF" {
		t.Errorf("bootstrap is not an ELF executable: %q %v", head, err)
	}
}
