package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/spf13/pflag"

	"github.com/clusterkeys/clusterkeys/pkg/config"
)

// TestHostExamples checks infra/host against the real code: every
// CLUSTERKEYS_* line of clusterkeys.env and every flag of the unit's
// ExecStart is a flag of localrun serve and takes its value, the result
// resolves, and clouds.yaml is read by gophercloud's own loader.
func TestHostExamples(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "infra", "host")
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	c := config.Default()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	c.BindFlags(fs)

	env := map[string]string{}
	for _, line := range strings.Split(read("clusterkeys.env"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("clusterkeys.env: %q is not KEY=VALUE", line)
		}
		env[k] = v
		if name, ok := strings.CutPrefix(k, config.EnvPrefix); ok {
			if fs.Lookup(strings.ToLower(strings.ReplaceAll(name, "_", "-"))) == nil {
				t.Errorf("clusterkeys.env sets %s, which is no flag of localrun serve", k)
			}
		} else if !strings.HasPrefix(k, "OS_") {
			t.Errorf("clusterkeys.env sets %s, neither CLUSTERKEYS_* nor OS_*", k)
		}
	}
	unit := read("clusterkeys.service")
	exec := regexp.MustCompile(`(?s)ExecStart=\S+ serve((?:\s*\\\n\s*--[a-z0-9-]+=\S+)+)`).FindStringSubmatch(unit)
	if exec == nil {
		t.Fatal("clusterkeys.service has no ExecStart=… serve --flag=value …")
	}
	for _, m := range regexp.MustCompile(`--([a-z0-9-]+)=(\S+)`).FindAllStringSubmatch(exec[1], -1) {
		if err := fs.Set(m[1], m[2]); err != nil {
			t.Errorf("clusterkeys.service: --%s=%s: %v", m[1], m[2], err)
		}
	}
	if err := config.ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatalf("clusterkeys.env: %v", err)
	}
	if _, err := c.Resolve(); err != nil {
		t.Fatalf("the example configuration does not resolve: %v", err)
	}
	if c.Auth != "keystone" || c.Keys != "barbican" || c.OSCloud == "" {
		t.Fatalf("the example is not the OpenStack one it says: auth %s keys %s cloud %q", c.Auth, c.Keys, c.OSCloud)
	}

	ao, _, _, err := clouds.Parse(clouds.WithCloudName(c.OSCloud), clouds.WithLocations(filepath.Join(dir, "clouds.yaml")))
	if err != nil {
		t.Fatalf("clouds.yaml: %v", err)
	}
	if ao.IdentityEndpoint == "" || ao.Username == "" || ao.TenantName == "" {
		t.Fatalf("clouds.yaml entry %q lacks auth_url, username or project: %+v", c.OSCloud, ao)
	}
	if got := filepath.Base(env["OS_CLIENT_CONFIG_FILE"]); got != "clouds.yaml" {
		t.Errorf("clusterkeys.env points OS_CLIENT_CONFIG_FILE at %q", env["OS_CLIENT_CONFIG_FILE"])
	}
}
