package config

import (
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

func TestResolveRefusesStoresNotBuiltIn(t *testing.T) {
	tests := []struct {
		name, store, want string
	}{
		{"PostgreSQL says it is not built in yet", "postgres://ck:s3cret-pw@db/ck", "not built in yet"},
		{"another scheme names only its scheme", "mysql://ck:s3cret-pw@db/ck", `"mysql"`},
		{"a bare path", "/var/lib/ck.db", "want sqlite:PATH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Store = tt.store
			_, err := c.Resolve()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Resolve(%q) = %v, want %q", tt.store, err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error repeats the password: %v", err)
			}
		})
	}
	c := Default()
	c.Store = "sqlite:/tmp/x.db"
	if _, err := c.Resolve(); err != nil {
		t.Fatalf("sqlite refused: %v", err)
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
