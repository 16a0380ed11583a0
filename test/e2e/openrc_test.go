package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// osVars are the variables that choose the service credentials. Each
// server below starts with all of them empty, so that an openrc sourced
// in the shell running the tests cannot change which form is tested.
var osVars = []string{
	"OS_CLOUD", "OS_CLIENT_CONFIG_FILE", "OS_AUTH_TYPE", "OS_AUTH_URL", "OS_IDENTITY_API_VERSION",
	"OS_USERNAME", "OS_USERID", "OS_USER_ID", "OS_PASSWORD", "OS_TOKEN", "OS_AUTH_TOKEN",
	"OS_PROJECT_ID", "OS_PROJECT_NAME", "OS_TENANT_ID", "OS_TENANT_NAME",
	"OS_USER_DOMAIN_ID", "OS_USER_DOMAIN_NAME", "OS_PROJECT_DOMAIN_ID", "OS_PROJECT_DOMAIN_NAME",
	"OS_DOMAIN_ID", "OS_DOMAIN_NAME", "OS_DEFAULT_DOMAIN", "OS_DEFAULT_DOMAIN_ID", "OS_DEFAULT_DOMAIN_NAME",
	"OS_APPLICATION_CREDENTIAL_ID", "OS_APPLICATION_CREDENTIAL_NAME", "OS_APPLICATION_CREDENTIAL_SECRET",
	"OS_SYSTEM_SCOPE", "OS_REGION_NAME", "OS_INTERFACE",
}

// runningKeystone is the shared Keystone, started again on its own
// directory and port (its set-up is kept, so this takes seconds) when
// TestKeystoneDownFailsClosed, which Go runs before this file, stopped it.
func runningKeystone(t *testing.T) *keystone {
	t.Helper()
	if k := &sharedKeystone; k.dir != "" && k.err != nil {
		u, err := url.Parse(k.URL)
		if err != nil {
			t.Fatal(err)
		}
		cmd := scriptCmd("keystone.sh", "start", k.dir, u.Port())
		cmd.Env = append(os.Environ(), fmt.Sprintf("KEYSTONE_TOKEN_EXPIRATION=%d", int(keystoneTokenLifetime.Seconds())))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("keystone.sh start again: %v\n%s", err, out)
		}
		k.err = nil
	}
	return startKeystone(t)
}

// login logs user in to project by password and returns the token with
// the IDs of the user and of the project.
func (k *keystone) login(t *testing.T, user, project string) (tok, userID, projectID string) {
	t.Helper()
	body := fmt.Sprintf(`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":%q,"domain":{"id":"default"},"password":%q}}},
		"scope":{"project":{"name":%q,"domain":{"id":"default"}}}}}`, user, user+"pw", project)
	resp, err := client.Post(k.URL+"/auth/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Token struct {
			User    struct{ ID string } `json:"user"`
			Project struct{ ID string } `json:"project"`
		} `json:"token"`
	}
	if resp.StatusCode != 201 {
		t.Fatalf("log in %s: %d", user, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.Header.Get("X-Subject-Token"), out.Token.User.ID, out.Token.Project.ID
}

// appCredential creates an application credential name for the user
// behind tok (with that user's roles in the token's project) and returns
// its ID and secret.
func (k *keystone) appCredential(t *testing.T, tok, userID, name string) (id, secret string) {
	t.Helper()
	body := fmt.Sprintf(`{"application_credential":{"name":%q}}`, name)
	req, err := http.NewRequest("POST", k.URL+"/users/"+userID+"/application_credentials", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Auth-Token", tok)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 201 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("create application credential: %d %s", resp.StatusCode, b)
	}
	var out struct {
		AC struct{ ID, Secret string } `json:"application_credential"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.AC.ID, out.AC.Secret
}

// TestOpenrcForms starts localrun serve --auth keystone with the service
// user's credentials in each form an operator gets from OpenStack (the
// Keystone v3 openrc, Horizon's openrc, an application credential by ID
// and by name, OS_CLOUD), without --os-cloud, and validates a user's
// Keystone token through each.
func TestOpenrcForms(t *testing.T) {
	k := runningKeystone(t)
	svcTok, svcID, serviceID := k.login(t, "svc", "service")
	acName := fmt.Sprintf("ck-openrc-%d", time.Now().UnixNano())
	acID, acSecret := k.appCredential(t, svcTok, svcID, acName)
	cloudsYAML := filepath.Join(t.TempDir(), "clouds.yaml")
	content := fmt.Sprintf("clouds:\n  openrc:\n    auth:\n      auth_url: %s\n      username: svc\n      project_name: service\n"+
		"      user_domain_name: Default\n      project_domain_name: Default\n    region_name: RegionOne\n", k.URL)
	if err := os.WriteFile(cloudsYAML, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	forms := []struct {
		name string
		env  []string
	}{
		{"keystone v3 openrc", []string{
			"OS_AUTH_URL=" + k.URL, "OS_USERNAME=svc", "OS_PASSWORD=svcpw", "OS_PROJECT_NAME=service",
			"OS_USER_DOMAIN_NAME=Default", "OS_PROJECT_DOMAIN_NAME=Default", "OS_IDENTITY_API_VERSION=3",
		}},
		{"horizon openrc", []string{
			"OS_AUTH_URL=" + k.URL, "OS_PROJECT_ID=" + serviceID, "OS_PROJECT_NAME=service", "OS_USER_DOMAIN_NAME=Default",
			"OS_PROJECT_DOMAIN_ID=default", "OS_USERNAME=svc", "OS_PASSWORD=svcpw", "OS_REGION_NAME=RegionOne",
			"OS_INTERFACE=public", "OS_IDENTITY_API_VERSION=3",
		}},
		{"application credential by ID", []string{
			"OS_AUTH_TYPE=v3applicationcredential", "OS_AUTH_URL=" + k.URL,
			"OS_APPLICATION_CREDENTIAL_ID=" + acID, "OS_APPLICATION_CREDENTIAL_SECRET=" + acSecret,
		}},
		{"application credential by name", []string{
			"OS_AUTH_TYPE=v3applicationcredential", "OS_AUTH_URL=" + k.URL, "OS_USERNAME=svc", "OS_USER_DOMAIN_NAME=Default",
			"OS_APPLICATION_CREDENTIAL_NAME=" + acName, "OS_APPLICATION_CREDENTIAL_SECRET=" + acSecret,
		}},
		{"OS_CLOUD with OS_PASSWORD", []string{"OS_CLOUD=openrc", "OS_CLIENT_CONFIG_FILE=" + cloudsYAML, "OS_PASSWORD=svcpw"}},
	}
	for i, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			env := make([]string, 0, len(osVars)+len(f.env))
			for _, v := range osVars {
				env = append(env, v+"=")
			}
			s := startServer(t, serverOpts{
				args: []string{"--auth", "keystone", "--auth-cache-ttl", "1s"},
				env:  append(env, f.env...),
			})
			alice := k.token(t, "alice", "team-a")
			if r := do(t, "PUT", fmt.Sprintf("%s/v1/clusters/openrc-%d/ca", s.URL, i), alice, `{}`); r.Status != 201 {
				t.Fatalf("a member creates a CA with the service logged in from %s: %d %s", f.name, r.Status, r.Body)
			}
		})
	}
}
