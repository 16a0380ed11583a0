package openstackauth

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
)

const authURL = "https://keystone.example:5000/v3"

// getenv serves vars, and nothing from the process environment.
func getenv(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// TestOptionsFromEnv builds the log-in of each openrc form the openstack
// CLI accepts, without reaching the network.
func TestOptionsFromEnv(t *testing.T) {
	v3openrc := map[string]string{
		"OS_AUTH_URL": authURL, "OS_USERNAME": "svc", "OS_PASSWORD": "svcpw",
		"OS_PROJECT_NAME": "service", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
		"OS_IDENTITY_API_VERSION": "3",
	}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	tests := []struct {
		name string
		env  map[string]string
		want gophercloud.AuthOptions
	}{
		{
			name: "keystone v3 openrc, project by name",
			env:  v3openrc,
			want: gophercloud.AuthOptions{IdentityEndpoint: authURL, Username: "svc", Password: "svcpw", DomainName: "Default",
				Scope: &gophercloud.AuthScope{ProjectName: "service", DomainName: "Default"}},
		},
		{
			name: "horizon openrc, project by ID",
			env: map[string]string{
				"OS_AUTH_URL": authURL, "OS_USERNAME": "svc", "OS_PASSWORD": "svcpw", "OS_PROJECT_ID": "0123abcd",
				"OS_PROJECT_NAME": "service", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_ID": "default",
				"OS_REGION_NAME": "RegionOne", "OS_INTERFACE": "public", "OS_IDENTITY_API_VERSION": "3",
			},
			want: gophercloud.AuthOptions{IdentityEndpoint: authURL, Username: "svc", Password: "svcpw", DomainName: "Default",
				Scope: &gophercloud.AuthScope{ProjectID: "0123abcd"}},
		},
		{
			name: "older horizon openrc: project ID, user domain name only",
			env: map[string]string{"OS_AUTH_URL": authURL, "OS_USERNAME": "svc", "OS_PASSWORD": "svcpw",
				"OS_PROJECT_ID": "0123abcd", "OS_USER_DOMAIN_NAME": "Default"},
			want: gophercloud.AuthOptions{IdentityEndpoint: authURL, Username: "svc", Password: "svcpw", DomainName: "Default",
				Scope: &gophercloud.AuthScope{ProjectID: "0123abcd"}},
		},
		{
			name: "no domains at all: OS_DEFAULT_DOMAIN defaults to the default domain",
			env:  with(v3openrc, "OS_USER_DOMAIN_NAME", "", "OS_PROJECT_DOMAIN_NAME", ""),
			want: gophercloud.AuthOptions{IdentityEndpoint: authURL, Username: "svc", Password: "svcpw", DomainID: "default",
				Scope: &gophercloud.AuthScope{ProjectName: "service", DomainID: "default"}},
		},
		{
			name: "OS_DEFAULT_DOMAIN fills both domains",
			env:  with(v3openrc, "OS_USER_DOMAIN_NAME", "", "OS_PROJECT_DOMAIN_NAME", "", "OS_DEFAULT_DOMAIN", "d42"),
			want: gophercloud.AuthOptions{IdentityEndpoint: authURL, Username: "svc", Password: "svcpw", DomainID: "d42",
				Scope: &gophercloud.AuthScope{ProjectName: "service", DomainID: "d42"}},
		},
		{
			name: "OS_DOMAIN_NAME stands for both domains",
			env:  with(v3openrc, "OS_USER_DOMAIN_NAME", "", "OS_PROJECT_DOMAIN_NAME", "", "OS_DOMAIN_NAME", "Ops"),
			want: gophercloud.AuthOptions{IdentityEndpoint: authURL, Username: "svc", Password: "svcpw", DomainName: "Ops",
				Scope: &gophercloud.AuthScope{ProjectName: "service", DomainName: "Ops"}},
		},
		{
			name: "OS_DOMAIN_ID yields to the explicit user and project domains",
			env:  with(v3openrc, "OS_DOMAIN_ID", "other", "OS_PROJECT_DOMAIN_NAME", "", "OS_PROJECT_DOMAIN_ID", "p-dom"),
			want: gophercloud.AuthOptions{IdentityEndpoint: authURL, Username: "svc", Password: "svcpw", DomainName: "Default",
				Scope: &gophercloud.AuthScope{ProjectName: "service", DomainID: "p-dom"}},
		},
		{
			name: "no project: OS_DOMAIN_NAME is a domain scope",
			env: map[string]string{"OS_AUTH_URL": authURL, "OS_USERNAME": "svc", "OS_PASSWORD": "svcpw",
				"OS_USER_DOMAIN_NAME": "Default", "OS_DOMAIN_NAME": "Ops"},
			want: gophercloud.AuthOptions{IdentityEndpoint: authURL, Username: "svc", Password: "svcpw", DomainName: "Default",
				Scope: &gophercloud.AuthScope{DomainName: "Ops"}},
		},
		{
			name: "legacy tenant names and a user ID",
			env:  map[string]string{"OS_AUTH_URL": authURL, "OS_USER_ID": "u-1", "OS_PASSWORD": "svcpw", "OS_TENANT_NAME": "service"},
			want: gophercloud.AuthOptions{IdentityEndpoint: authURL, UserID: "u-1", Password: "svcpw",
				Scope: &gophercloud.AuthScope{ProjectName: "service", DomainID: "default"}},
		},
		{
			name: "system scope",
			env:  map[string]string{"OS_AUTH_URL": authURL, "OS_USERNAME": "admin", "OS_PASSWORD": "adminpw", "OS_SYSTEM_SCOPE": "all"},
			want: gophercloud.AuthOptions{IdentityEndpoint: authURL, Username: "admin", Password: "adminpw", DomainID: "default",
				Scope: &gophercloud.AuthScope{System: true}},
		},
		{
			name: "application credential by ID: no user, no scope, no password",
			env: with(v3openrc, "OS_AUTH_TYPE", "v3applicationcredential", "OS_APPLICATION_CREDENTIAL_ID", "ac-1",
				"OS_APPLICATION_CREDENTIAL_SECRET", "acpw"),
			want: gophercloud.AuthOptions{IdentityEndpoint: authURL, ApplicationCredentialID: "ac-1", ApplicationCredentialSecret: "acpw"},
		},
		{
			name: "application credential by name with the user's name and domain",
			env: map[string]string{"OS_AUTH_URL": authURL, "OS_AUTH_TYPE": "v3applicationcredential", "OS_USERNAME": "svc",
				"OS_USER_DOMAIN_NAME": "Default", "OS_APPLICATION_CREDENTIAL_NAME": "ck", "OS_APPLICATION_CREDENTIAL_SECRET": "acpw"},
			want: gophercloud.AuthOptions{IdentityEndpoint: authURL, Username: "svc", DomainName: "Default",
				ApplicationCredentialName: "ck", ApplicationCredentialSecret: "acpw"},
		},
		{
			name: "application credential by name, user domain from OS_DEFAULT_DOMAIN",
			env: map[string]string{"OS_AUTH_URL": authURL, "OS_AUTH_TYPE": "v3applicationcredential", "OS_USERNAME": "svc",
				"OS_APPLICATION_CREDENTIAL_NAME": "ck", "OS_APPLICATION_CREDENTIAL_SECRET": "acpw"},
			want: gophercloud.AuthOptions{IdentityEndpoint: authURL, Username: "svc", DomainID: "default",
				ApplicationCredentialName: "ck", ApplicationCredentialSecret: "acpw"},
		},
		{
			name: "application credential without OS_AUTH_TYPE and without a password",
			env: map[string]string{"OS_AUTH_URL": authURL, "OS_APPLICATION_CREDENTIAL_ID": "ac-1",
				"OS_APPLICATION_CREDENTIAL_SECRET": "acpw"},
			want: gophercloud.AuthOptions{IdentityEndpoint: authURL, ApplicationCredentialID: "ac-1", ApplicationCredentialSecret: "acpw"},
		},
		{
			name: "OS_TOKEN exported to call clusterkeys is not used to log in",
			env:  with(v3openrc, "OS_TOKEN", "user-token", "OS_AUTH_TOKEN", "user-token"),
			want: gophercloud.AuthOptions{IdentityEndpoint: authURL, Username: "svc", Password: "svcpw", DomainName: "Default",
				Scope: &gophercloud.AuthScope{ProjectName: "service", DomainName: "Default"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := Options("", getenv(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v scope %+v\nwant %+v scope %+v", got, got.Scope, tt.want, tt.want.Scope)
			}
			// gophercloud must be able to build the request from it.
			if _, err := got.ToTokenV3CreateMap(nil); err != nil {
				t.Errorf("token request: %v", err)
			}
			if _, err := got.ToTokenV3ScopeMap(); err != nil {
				t.Errorf("token scope: %v", err)
			}
		})
	}
}

// TestOptionsFromEnvErrors names the variable that is missing or wrong,
// and never echoes a secret.
func TestOptionsFromEnvErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"nothing set", map[string]string{}, "OS_AUTH_URL is not set"},
		{"no user", map[string]string{"OS_AUTH_URL": authURL, "OS_PASSWORD": "s3cret"}, "OS_USERNAME or OS_USER_ID is not set"},
		{"no password", map[string]string{"OS_AUTH_URL": authURL, "OS_USERNAME": "svc"}, "OS_PASSWORD is not set"},
		{"keystone v2", map[string]string{"OS_AUTH_URL": authURL, "OS_USERNAME": "svc", "OS_PASSWORD": "s3cret", "OS_IDENTITY_API_VERSION": "2.0"}, "only the Keystone v3 API"},
		{"token auth", map[string]string{"OS_AUTH_URL": authURL, "OS_AUTH_TYPE": "v3token", "OS_TOKEN": "s3cret"}, "OS_AUTH_TYPE=v3token is not supported"},
		{"app credential without secret", map[string]string{"OS_AUTH_URL": authURL, "OS_AUTH_TYPE": "v3applicationcredential", "OS_APPLICATION_CREDENTIAL_ID": "ac"}, "OS_APPLICATION_CREDENTIAL_SECRET is not set"},
		{"app credential without ID or name", map[string]string{"OS_AUTH_URL": authURL, "OS_AUTH_TYPE": "v3applicationcredential", "OS_APPLICATION_CREDENTIAL_SECRET": "s3cret"}, "OS_APPLICATION_CREDENTIAL_ID or OS_APPLICATION_CREDENTIAL_NAME is not set"},
		{"app credential name without user", map[string]string{"OS_AUTH_URL": authURL, "OS_AUTH_TYPE": "v3applicationcredential", "OS_APPLICATION_CREDENTIAL_NAME": "ck", "OS_APPLICATION_CREDENTIAL_SECRET": "s3cret"}, "OS_APPLICATION_CREDENTIAL_NAME needs OS_USERNAME or OS_USER_ID"},
		{"bad system scope", map[string]string{"OS_AUTH_URL": authURL, "OS_USERNAME": "svc", "OS_PASSWORD": "s3cret", "OS_SYSTEM_SCOPE": "some"}, "OS_SYSTEM_SCOPE=some"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Options("", getenv(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error shows a secret: %v", err)
			}
		})
	}
}

// TestOptionsFromCloud reads a clouds.yaml entry named by the flag or by
// OS_CLOUD, with OS_* variables overriding its fields as in the CLI.
func TestOptionsFromCloud(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "clouds.yaml")
	content := "clouds:\n" +
		"  ck:\n    auth:\n      auth_url: " + authURL + "\n      username: svc\n      password: svcpw\n" +
		"      project_name: service\n      user_domain_name: Default\n      project_domain_name: Default\n    region_name: RegionOne\n    interface: internal\n" +
		"  nopw:\n    auth:\n      auth_url: " + authURL + "\n      username: svc\n      project_id: p-1\n      user_domain_name: Default\n" +
		"  appcred:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: " + authURL + "\n" +
		"      application_credential_id: ac-1\n      application_credential_secret: acpw\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OS_CLIENT_CONFIG_FILE", file)
	for _, k := range []string{"OS_CLOUD", "OS_REGION_NAME", "OS_INTERFACE"} {
		t.Setenv(k, "")
	}
	password := gophercloud.AuthOptions{IdentityEndpoint: authURL, Username: "svc", Password: "svcpw", DomainName: "Default",
		Scope: &gophercloud.AuthScope{ProjectName: "service", DomainName: "Default"}}
	tests := []struct {
		name   string
		flag   string
		env    map[string]string
		want   gophercloud.AuthOptions
		region string
		avail  gophercloud.Availability
	}{
		{name: "named by the flag", flag: "ck", want: password, region: "RegionOne", avail: gophercloud.AvailabilityInternal},
		{name: "named by OS_CLOUD", env: map[string]string{"OS_CLOUD": "ck"}, want: password, region: "RegionOne", avail: gophercloud.AvailabilityInternal},
		{
			name: "OS_PASSWORD completes an entry without one",
			env:  map[string]string{"OS_CLOUD": "nopw", "OS_PASSWORD": "svcpw", "OS_REGION_NAME": "Two"},
			want: gophercloud.AuthOptions{IdentityEndpoint: authURL, Username: "svc", Password: "svcpw", DomainName: "Default",
				Scope: &gophercloud.AuthScope{ProjectID: "p-1"}},
			region: "Two", avail: gophercloud.AvailabilityPublic,
		},
		{
			name: "application credential entry",
			flag: "appcred",
			want: gophercloud.AuthOptions{IdentityEndpoint: authURL, ApplicationCredentialID: "ac-1", ApplicationCredentialSecret: "acpw"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, eo, err := Options(tt.flag, getenv(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v scope %+v\nwant %+v scope %+v", got, got.Scope, tt.want, tt.want.Scope)
			}
			if eo.Region != tt.region || eo.Availability != tt.avail && tt.avail != "" {
				t.Errorf("endpoint options %+v, want region %q interface %q", eo, tt.region, tt.avail)
			}
		})
	}
	if _, _, err := Options("missing", getenv(nil)); err == nil || !strings.Contains(err.Error(), `"missing"`) {
		t.Errorf("an unknown entry: %v", err)
	}
}
