// Package openstackauth logs clusterkeys in to an OpenStack cloud as its
// own service user, from a clouds.yaml entry or OS_* variables, for the
// backends that talk to Keystone and Barbican.
//
// It accepts what the openstack CLI accepts: the Keystone v3 openrc
// (project by name), Horizon's openrc (project by ID), an OS_CLOUD entry of
// clouds.yaml with OS_* variables overriding its fields, and application
// credentials (OS_AUTH_TYPE=v3applicationcredential). OS_DOMAIN_ID and
// OS_DOMAIN_NAME stand for the user and project domain when those are not
// given, and OS_DEFAULT_DOMAIN (default "default") fills in what is still
// missing, as osc-lib does.
package openstackauth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
)

// Provider returns an authenticated provider client that re-authenticates
// when its token expires, and the endpoint options (region, interface) of
// the cloud. cloud names a clouds.yaml entry; empty falls back to OS_CLOUD
// and, without it, to the OS_* variables of an openrc file.
func Provider(ctx context.Context, cloud string) (*gophercloud.ProviderClient, gophercloud.EndpointOpts, error) {
	ao, eo, err := Options(cloud, os.Getenv)
	if err != nil {
		return nil, eo, fmt.Errorf("openstack service credentials: %w", err)
	}
	ao.AllowReauth = true
	pc, err := openstack.NewClient(ao.IdentityEndpoint)
	if err != nil {
		return nil, eo, fmt.Errorf("openstack: %w", err)
	}
	pc.HTTPClient.Timeout = 10 * time.Second
	if err := openstack.Authenticate(ctx, pc, ao); err != nil {
		return nil, eo, fmt.Errorf("openstack: log in as the clusterkeys service user: %w", err)
	}
	return pc, eo, nil
}

// Options builds the Keystone v3 log-in and the endpoint options from the
// clouds.yaml entry cloud (empty: getenv("OS_CLOUD")) with the OS_* values
// of getenv laid over it, or from the OS_* values alone when no cloud is
// named. It does not reach the network.
func Options(cloud string, getenv func(string) string) (gophercloud.AuthOptions, gophercloud.EndpointOpts, error) {
	if cloud == "" {
		cloud = getenv("OS_CLOUD")
	}
	var c creds
	var eo gophercloud.EndpointOpts
	if cloud != "" {
		ao, ceo, _, err := clouds.Parse(clouds.WithCloudName(cloud))
		if err != nil {
			return gophercloud.AuthOptions{}, eo, fmt.Errorf("clouds.yaml entry %q: %w", cloud, err)
		}
		c, eo = fromCloud(ao), ceo
	}
	c.overlay(getenv)
	if v := first(getenv("OS_REGION_NAME")); v != "" {
		eo.Region = v
	}
	if v := first(getenv("OS_INTERFACE"), getenv("OS_ENDPOINT_TYPE")); v != "" {
		eo.Availability = availability(v)
	}
	ao, err := c.authOptions()
	return ao, eo, err
}

// creds holds the log-in settings under their openrc names, before the
// domain defaults are applied.
type creds struct {
	authType, identityAPIVersion          string
	authURL, userID, username, password   string
	userDomainID, userDomainName          string
	projectID, projectName                string
	projectDomainID, projectDomainName    string
	domainID, domainName                  string
	defaultDomainID, defaultDomainName    string
	appCredID, appCredName, appCredSecret string
	systemScope                           string
}

// fromCloud recovers the settings from what clouds.Parse built, so that
// one set of rules applies to a clouds.yaml entry and to an openrc.
func fromCloud(ao gophercloud.AuthOptions) creds {
	c := creds{
		authURL:        ao.IdentityEndpoint,
		userID:         ao.UserID,
		username:       ao.Username,
		password:       ao.Password,
		userDomainID:   ao.DomainID,
		userDomainName: ao.DomainName,
		projectID:      ao.TenantID,
		projectName:    ao.TenantName,
		appCredID:      ao.ApplicationCredentialID,
		appCredName:    ao.ApplicationCredentialName,
		appCredSecret:  ao.ApplicationCredentialSecret,
	}
	if s := ao.Scope; s != nil {
		switch {
		case s.System:
			c.systemScope = "all"
		case s.ProjectID != "":
			c.projectID = s.ProjectID
		case s.ProjectName != "":
			c.projectName, c.projectDomainID, c.projectDomainName = s.ProjectName, s.DomainID, s.DomainName
		default:
			c.domainID, c.domainName = s.DomainID, s.DomainName
		}
	}
	return c
}

// overlay sets every field whose variable is set, as the openstack CLI
// lets OS_* variables override a clouds.yaml entry. Later names in each
// list win, the current name being last. OS_TOKEN is deliberately not
// read: a service that logged in with a token could not log in again
// once it expires, and users export OS_TOKEN to call clusterkeys.
func (c *creds) overlay(getenv func(string) string) {
	for _, f := range []struct {
		dst   *string
		names []string
	}{
		{&c.authType, []string{"OS_AUTH_TYPE"}},
		{&c.identityAPIVersion, []string{"OS_IDENTITY_API_VERSION"}},
		{&c.authURL, []string{"OS_AUTH_URL"}},
		{&c.userID, []string{"OS_USERID", "OS_USER_ID"}},
		{&c.username, []string{"OS_USERNAME"}},
		{&c.password, []string{"OS_PASSWORD"}},
		{&c.userDomainID, []string{"OS_USER_DOMAIN_ID"}},
		{&c.userDomainName, []string{"OS_USER_DOMAIN_NAME"}},
		{&c.projectID, []string{"OS_TENANT_ID", "OS_PROJECT_ID"}},
		{&c.projectName, []string{"OS_TENANT_NAME", "OS_PROJECT_NAME"}},
		{&c.projectDomainID, []string{"OS_PROJECT_DOMAIN_ID"}},
		{&c.projectDomainName, []string{"OS_PROJECT_DOMAIN_NAME"}},
		{&c.domainID, []string{"OS_DOMAIN_ID"}},
		{&c.domainName, []string{"OS_DOMAIN_NAME"}},
		{&c.defaultDomainID, []string{"OS_DEFAULT_DOMAIN_ID", "OS_DEFAULT_DOMAIN"}},
		{&c.defaultDomainName, []string{"OS_DEFAULT_DOMAIN_NAME"}},
		{&c.appCredID, []string{"OS_APPLICATION_CREDENTIAL_ID"}},
		{&c.appCredName, []string{"OS_APPLICATION_CREDENTIAL_NAME"}},
		{&c.appCredSecret, []string{"OS_APPLICATION_CREDENTIAL_SECRET"}},
		{&c.systemScope, []string{"OS_SYSTEM_SCOPE"}},
	} {
		for _, n := range f.names {
			if v := getenv(n); v != "" {
				*f.dst = v
			}
		}
	}
}

// authOptions applies the openstack CLI's rules and checks that a log-in
// can be attempted, naming the variable that is missing.
func (c creds) authOptions() (gophercloud.AuthOptions, error) {
	var none gophercloud.AuthOptions
	if v := c.identityAPIVersion; v != "" && !strings.HasPrefix(v, "3") {
		return none, fmt.Errorf("OS_IDENTITY_API_VERSION=%s: only the Keystone v3 API is supported", v)
	}
	if c.authURL == "" {
		return none, errors.New("OS_AUTH_URL is not set: source an openrc file, or name a clouds.yaml entry with --os-cloud or OS_CLOUD")
	}
	appCred := false
	switch strings.ToLower(strings.ReplaceAll(c.authType, "-", "_")) {
	case "":
		// Without an auth type the CLI logs in with a password; an
		// application credential and no password can mean nothing else.
		appCred = c.password == "" && (c.appCredID != "" || c.appCredName != "")
	case "password", "v3password":
	case "v3applicationcredential", "applicationcredential", "application_credential", "v3_application_credential":
		appCred = true
	default:
		return none, fmt.Errorf("OS_AUTH_TYPE=%s is not supported: use password (the default) or v3applicationcredential; a service needs credentials it can log in with again when its token expires", c.authType)
	}
	projectScoped := !appCred && (c.projectID != "" || c.projectName != "")
	if projectScoped || appCred {
		// OS_DOMAIN_* stands for both domains when they are not given.
		if c.userDomainID == "" && c.userDomainName == "" {
			c.userDomainID, c.userDomainName = c.domainID, c.domainName
		}
		if c.projectDomainID == "" && c.projectDomainName == "" {
			c.projectDomainID, c.projectDomainName = c.domainID, c.domainName
		}
		c.domainID, c.domainName = "", ""
	}
	if c.defaultDomainID == "" && c.defaultDomainName == "" {
		c.defaultDomainID = "default"
	}
	if c.userDomainID == "" && c.userDomainName == "" {
		c.userDomainID, c.userDomainName = c.defaultDomainID, c.defaultDomainName
	}
	if c.projectDomainID == "" && c.projectDomainName == "" {
		c.projectDomainID, c.projectDomainName = c.defaultDomainID, c.defaultDomainName
	}
	ao := gophercloud.AuthOptions{IdentityEndpoint: c.authURL}
	if c.userID == "" {
		ao.Username = c.username
		ao.DomainID, ao.DomainName = oneOf(c.userDomainID, c.userDomainName)
	} else {
		ao.UserID = c.userID
	}
	if appCred {
		if c.appCredSecret == "" {
			return none, errors.New("OS_APPLICATION_CREDENTIAL_SECRET is not set")
		}
		switch {
		case c.appCredID != "":
			ao.ApplicationCredentialID = c.appCredID
			// The ID names the user; keystone refuses a user beside it.
			ao.Username, ao.UserID, ao.DomainID, ao.DomainName = "", "", "", ""
		case c.appCredName != "":
			if c.username == "" && c.userID == "" {
				return none, errors.New("OS_APPLICATION_CREDENTIAL_NAME needs OS_USERNAME or OS_USER_ID")
			}
			ao.ApplicationCredentialName = c.appCredName
		default:
			return none, errors.New("OS_APPLICATION_CREDENTIAL_ID or OS_APPLICATION_CREDENTIAL_NAME is not set")
		}
		ao.ApplicationCredentialSecret = c.appCredSecret
		return ao, nil
	}
	if c.username == "" && c.userID == "" {
		return none, errors.New("OS_USERNAME or OS_USER_ID is not set")
	}
	if c.password == "" {
		return none, errors.New("OS_PASSWORD is not set")
	}
	ao.Password = c.password
	switch {
	case c.projectID != "":
		ao.Scope = &gophercloud.AuthScope{ProjectID: c.projectID}
	case c.projectName != "":
		s := &gophercloud.AuthScope{ProjectName: c.projectName}
		s.DomainID, s.DomainName = oneOf(c.projectDomainID, c.projectDomainName)
		ao.Scope = s
	case c.systemScope != "":
		if c.systemScope != "all" {
			return none, fmt.Errorf("OS_SYSTEM_SCOPE=%s: only \"all\" is a system scope", c.systemScope)
		}
		ao.Scope = &gophercloud.AuthScope{System: true}
	case c.domainID != "" || c.domainName != "":
		s := &gophercloud.AuthScope{}
		s.DomainID, s.DomainName = oneOf(c.domainID, c.domainName)
		ao.Scope = s
	}
	return ao, nil
}

// oneOf keeps the ID when both an ID and a name are given, as keystoneauth
// does.
func oneOf(id, name string) (string, string) {
	if id != "" {
		return id, ""
	}
	return "", name
}

// first returns the first non-empty value.
func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// availability maps OS_INTERFACE to the catalog interface.
func availability(v string) gophercloud.Availability {
	switch strings.TrimSuffix(strings.ToLower(v), "url") {
	case "internal":
		return gophercloud.AvailabilityInternal
	case "admin":
		return gophercloud.AvailabilityAdmin
	default:
		return gophercloud.AvailabilityPublic
	}
}
