package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/clusterkeys/clusterkeys/pkg/gateway"
)

func TestFlagsAndEnvironment(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantKeys  string
		wantStore string
		wantErr   string
	}{
		{"defaults are software keys and sqlite in the state dir", nil, nil, "software", "sqlite:.clusterkeys/clusterkeys.db", ""},
		{"the environment sets a flag", nil, map[string]string{"CLUSTERKEYS_KEYS": "pkcs11", "CLUSTERKEYS_STATE_DIR": "/s"}, "pkcs11", "sqlite:/s/clusterkeys.db", ""},
		{"the command line wins over the environment", []string{"--keys", "software"}, map[string]string{"CLUSTERKEYS_KEYS": "pkcs11"}, "software", "sqlite:.clusterkeys/clusterkeys.db", ""},
		{"an unknown custody is refused", []string{"--keys", "vault"}, nil, "", "", "--keys \"vault\""},
		{"an unknown store is refused", []string{"--store", "mysql://x"}, nil, "", "", "--store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			c.BindFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			if err := ApplyEnv(fs, lookup); err != nil {
				t.Fatal(err)
			}
			got, err := c.Resolve()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Keys != tt.wantKeys || got.Store != tt.wantStore {
				t.Fatalf("keys %q store %q", got.Keys, got.Store)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("pkcs11-pin-file"); got != "CLUSTERKEYS_PKCS11_PIN_FILE" {
		t.Fatal(got)
	}
}

func TestResolveStore(t *testing.T) {
	const pw = "s3cret-pw"
	tests := []struct {
		name, store, want, wantErr string
	}{
		{"a PostgreSQL URI is accepted", "postgres://ck:" + pw + "@db/ck", "postgres", ""},
		{"postgresql:// is the same", "postgresql://ck:" + pw + "@db/ck?sslmode=verify-full", "postgres", ""},
		{"a unix socket directory in the query", "postgres:///ck?host=/run/postgresql&port=5433", "postgres", ""},
		{"sqlite names its path", "sqlite:/tmp/x.db", "sqlite:/tmp/x.db", ""},
		{"another scheme names only its scheme", "mysql://ck:" + pw + "@db/ck", "", `"mysql:"`},
		{"a bare path is refused", "/var/lib/ck.db", "", "want sqlite:PATH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Store = tt.store
			got, err := c.Resolve()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Resolve(%q) = %v, want %q", tt.store, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), pw) {
					t.Fatalf("the error repeats the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Store != tt.store || got.StoreName() != tt.want {
				t.Fatalf("Store %q, StoreName %q; want %q", got.Store, got.StoreName(), tt.want)
			}
		})
	}
}

func TestStoreFile(t *testing.T) {
	const dsn = "postgres://ck:s3cret-pw@db.example/ck?sslmode=verify-full"
	write := func(t *testing.T, content string, mode os.FileMode) string {
		t.Helper()
		path := filepath.Join(t.TempDir(), "store")
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	t.Run("the file's DSN becomes the store, without its newline", func(t *testing.T) {
		c := Default()
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		c.BindFlags(fs)
		if err := fs.Parse([]string{"--store-file", write(t, dsn+"\n", 0o600)}); err != nil {
			t.Fatal(err)
		}
		got, err := c.Resolve()
		if err != nil || got.Store != dsn || got.StoreName() != "postgres" {
			t.Fatalf("Resolve = %q, %v", got.StoreName(), err)
		}
	})
	t.Run("CLUSTERKEYS_STORE_FILE sets it too", func(t *testing.T) {
		c := Default()
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		c.BindFlags(fs)
		path := write(t, dsn, 0o400)
		if err := ApplyEnv(fs, func(k string) (string, bool) { return path, k == "CLUSTERKEYS_STORE_FILE" }); err != nil {
			t.Fatal(err)
		}
		if got, err := c.Resolve(); err != nil || got.Store != dsn {
			t.Fatalf("Resolve: %v", err)
		}
	})
	bad := []struct {
		name    string
		cfg     func(t *testing.T) Config
		wantErr string
	}{
		{"a file others can read is refused", func(t *testing.T) Config {
			c := Default()
			c.StoreFile = write(t, dsn, 0o644)
			return c
		}, "chmod 600"},
		{"an empty file is refused", func(t *testing.T) Config {
			c := Default()
			c.StoreFile = write(t, " \n", 0o600)
			return c
		}, "is empty"},
		{"a missing file is refused", func(t *testing.T) Config {
			c := Default()
			c.StoreFile = filepath.Join(t.TempDir(), "missing")
			return c
		}, "--store-file"},
		{"both --store and --store-file are refused", func(t *testing.T) Config {
			c := Default()
			c.Store = "sqlite:/tmp/x.db"
			c.StoreFile = write(t, dsn, 0o600)
			return c
		}, "give one"},
		{"an unknown scheme in the file names only its scheme", func(t *testing.T) Config {
			c := Default()
			c.StoreFile = write(t, "mysql://ck:s3cret-pw@db/ck", 0o600)
			return c
		}, `"mysql:"`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg(t).Resolve()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Resolve = %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

func TestLimitFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    [4]int // max-in-flight, -validate, max-auth-failures, window seconds
		wantErr string
	}{
		{"defaults", nil, nil, [4]int{64, Default().MaxInFlightValidate, 20, 60}, ""},
		{"flags set them", []string{"--max-in-flight", "8", "--max-in-flight-validate", "1", "--max-auth-failures", "5", "--auth-failure-window", "10s"}, nil, [4]int{8, 1, 5, 10}, ""},
		{"the environment sets them", nil, map[string]string{"CLUSTERKEYS_MAX_IN_FLIGHT": "0", "CLUSTERKEYS_MAX_AUTH_FAILURES": "0"}, [4]int{0, Default().MaxInFlightValidate, 0, 60}, ""},
		{"a negative limit is refused", []string{"--max-in-flight-validate", "-1"}, nil, [4]int{}, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			c.BindFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if err := ApplyEnv(fs, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }); err != nil {
				t.Fatal(err)
			}
			got, err := c.Resolve()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g := [4]int{got.MaxInFlight, got.MaxInFlightValidate, got.MaxAuthFailures, int(got.AuthFailureWindow.Seconds())}; g != tt.want {
				t.Errorf("got %v, want %v", g, tt.want)
			}
		})
	}
}

func TestLimitDefaultsAreTheGatewaysDefaults(t *testing.T) {
	c, g := Default(), gateway.DefaultLimits()
	if c.MaxInFlight != g.MaxInFlight || c.MaxInFlightValidate != g.RouteMaxInFlight[gateway.ValidateRoute] ||
		c.MaxAuthFailures != g.MaxAuthFailures || c.AuthFailureWindow != g.AuthFailureWindow {
		t.Errorf("config defaults %d/%d/%d/%s differ from gateway.DefaultLimits %+v",
			c.MaxInFlight, c.MaxInFlightValidate, c.MaxAuthFailures, c.AuthFailureWindow, g)
	}
}

func TestReconcileFlags(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		interval time.Duration
		window   time.Duration
		wantErr  bool
	}{
		{"defaults: every 15 minutes, a one-hour window", nil, 15 * time.Minute, time.Hour, false},
		{"both set", []string{"--reconcile-interval", "1s", "--orphan-safety-window", "2s"}, time.Second, 2 * time.Second, false},
		{"an interval of 0 disables it", []string{"--reconcile-interval", "0"}, 0, time.Hour, false},
		{"a negative interval is refused", []string{"--reconcile-interval", "-1s"}, 0, 0, true},
		{"a zero window is refused", []string{"--orphan-safety-window", "0"}, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			c.BindFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			got, err := c.Resolve()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Resolve = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && (got.ReconcileInterval != tt.interval || got.OrphanSafetyWindow != tt.window) {
				t.Fatalf("interval %v window %v", got.ReconcileInterval, got.OrphanSafetyWindow)
			}
		})
	}
}
func TestPublicURL(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{"unset stays unset", "", "", false},
		{"an https URL is kept", "https://keys.example.com", "https://keys.example.com", false},
		{"a trailing slash is dropped", "https://keys.example.com/ck/", "https://keys.example.com/ck", false},
		{"http is accepted", "http://127.0.0.1:8080", "http://127.0.0.1:8080", false},
		{"a relative URL is refused", "/v1", "", true},
		{"a host without scheme is refused", "keys.example.com", "", true},
		{"another scheme is refused", "ftp://keys.example.com", "", true},
		{"a query is refused", "https://keys.example.com/?x=1", "", true},
		{"a fragment is refused", "https://keys.example.com/#x", "", true},
		{"user information is refused without repeating it", "https://u:s3cret-pw@keys.example.com", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			c := Default()
			c.BindFlags(fs)
			if err := fs.Parse([]string{"--public-url=" + tt.in}); err != nil {
				t.Fatal(err)
			}
			got, err := c.Resolve()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Resolve = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				if strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("the error repeats the password: %v", err)
				}
				return
			}
			if got.PublicURL != tt.want {
				t.Fatalf("PublicURL = %q, want %q", got.PublicURL, tt.want)
			}
		})
	}
}

// TestUnlinkedBackendNamesItsTag: a configuration naming a backend the
// binary was built without fails at Resolve with the build tag that links
// it, and never repeats a store value's password.
func TestUnlinkedBackendNamesItsTag(t *testing.T) {
	const pw = "s3cret-pw"
	for _, tt := range []struct {
		name, keys, store, want string
	}{
		{"custody", "hsm-x", "", `--keys "hsm-x": this binary is built without the hsm-x custody (it links software, pkcs11 or barbican); build it with -tags clusterkeys.keys.hsm-x to link it (make lambda and make package: LAMBDA_BACKENDS; see pkg/backends/all)`},
		{"store", "software", "etcd://u:" + pw + "@h/x", `--store "etcd:"…: this binary is built without the etcd store (it links sqlite:PATH or postgres://…); build it with -tags clusterkeys.store.etcd to link it (make lambda and make package: LAMBDA_BACKENDS; see pkg/backends/all)`},
		{"an unknown custody is not a build matter", "vault", "", `--keys "vault": want software, pkcs11 or barbican`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Keys, c.Store = tt.keys, tt.store
			_, err := c.Resolve()
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Resolve = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("the error repeats the password: %v", err)
			}
		})
	}
}
