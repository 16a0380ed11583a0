// Package barbicanref loads the TLS material a Barbican container_ref
// names, for validate-TLS-bundle (POST /v1/tls/validate): a certificate
// container, as Octavia stores it, or a single secret holding a PKCS#12
// bundle. It reads as the caller, so Barbican's own policy decides what
// the caller may see.
//
// It is apart from Barbican key custody (pkg/keys/barbican) so that the
// validatebundle function links no custody or store code: it imports
// neither pkg/keys, pkg/keywrap nor pkg/store.
//
// # Errors
//
// A container_ref that is not a container or secret of the configured
// Barbican is api.Invalid (tlsbundle.CodeContainerRefUnsupported), as is a
// container that is not a certificate or generic container. A missing
// container or secret wraps api.ErrNotFound; one the caller may not read
// (Barbican answering 401 or 403) wraps api.ErrForbidden; a secret larger
// than tlsbundle.MaxInputBytes is 413 (tlsbundle.CodeInputTooLarge).
// Barbican failing (5xx) or unreachable wraps api.ErrUnavailable, and any
// other answer api.ErrBackend (see barbicanerr.Classify).
package barbicanref

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/keymanager/v1/containers"
	"github.com/gophercloud/gophercloud/v2/openstack/keymanager/v1/secrets"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/barbicanerr"
	"github.com/clusterkeys/clusterkeys/pkg/tlsbundle"
)

// maxSecretPayload bounds one fetched secret; validate-TLS-bundle refuses
// more than 1 MiB of material in all anyway.
const maxSecretPayload = tlsbundle.MaxInputBytes

// Config says which Barbican container_refs are read from, and how.
type Config struct {
	// Endpoint is Barbican's base URL, e.g. http://127.0.0.1:9311. Only
	// refs to this scheme and host are followed.
	Endpoint string
	// Timeout bounds each load (all its Barbican calls); 10 s when 0.
	Timeout time.Duration
	// CallerToken says Barbican authenticates with Keystone, so refs are
	// read with the caller's own token. When false (Barbican's
	// unauthenticated pipeline), refs are read as the caller's project by
	// header, with Barbican's read-only observer role.
	CallerToken bool
}

// Loader loads TLS material stored in Barbican for validate-TLS-bundle's
// container_ref, as Octavia does: a certificate container (secrets named
// certificate, private_key, intermediates, private_key_passphrase) or a
// single secret holding a PKCS#12 bundle. It reads as the caller's project,
// so Barbican's own policy decides, and a container of another project is
// 403 forbidden. It implements tlsbundle.ContainerLoader.
type Loader struct {
	endpoint *url.URL
	// callerToken: Barbican authenticates with Keystone, so act with the
	// caller's own token rather than as its project by header.
	callerToken bool
	timeout     time.Duration
	hc          http.Client
}

var _ tlsbundle.ContainerLoader = (*Loader)(nil)

// New returns a loader for the Barbican at cfg.Endpoint. It does not call
// Barbican. Only references to that Barbican are followed: a container_ref
// naming any other host is refused, so the function cannot be used to
// reach arbitrary URLs.
func New(cfg Config) (*Loader, error) {
	u, err := url.Parse(strings.TrimSuffix(cfg.Endpoint, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("barbicanref: endpoint %q is not an http(s) URL", cfg.Endpoint)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Loader{endpoint: u, timeout: cfg.Timeout, hc: http.Client{Timeout: cfg.Timeout}, callerToken: cfg.CallerToken}, nil
}

// isUUID reports whether s is a UUID in its 8-4-4-4-12 hex form (either
// case); written out rather than a regexp compiled at package init, which
// cost validatebundle's cold start.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// parseRef returns the kind ("containers" or "secrets") and id of ref: a
// full Barbican href of our endpoint, or a bare container id.
func (l *Loader) parseRef(ref string) (kind, id string, err error) {
	if isUUID(ref) {
		return "containers", ref, nil
	}
	u, err := url.Parse(ref)
	if err != nil || u.Scheme != l.endpoint.Scheme || u.Host != l.endpoint.Host || u.RawQuery != "" || u.Fragment != "" {
		return "", "", api.Invalid(tlsbundle.CodeContainerRefUnsupported, tlsbundle.FieldContainerRef,
			"container_ref must be a container or secret of the configured Barbican ("+l.endpoint.Scheme+"://"+l.endpoint.Host+")")
	}
	rest, ok := strings.CutPrefix(u.Path, strings.TrimSuffix(l.endpoint.Path, "/")+"/v1/")
	if ok {
		kind, id, ok = strings.Cut(rest, "/")
	}
	if !ok || (kind != "containers" && kind != "secrets") || !isUUID(id) {
		return "", "", api.Invalid(tlsbundle.CodeContainerRefUnsupported, tlsbundle.FieldContainerRef,
			"container_ref must name /v1/containers/{id} or /v1/secrets/{id}")
	}
	return kind, id, nil
}

// client is a Barbican client acting as the caller's project.
func (l *Loader) client(ctx context.Context) (*gophercloud.ServiceClient, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.Project == "" {
		return nil, fmt.Errorf("load container: no project to act as: %w", api.ErrForbidden)
	}
	base := l.endpoint.String() + "/"
	if l.callerToken {
		token := auth.TokenFromContext(ctx)
		if token == "" {
			return nil, fmt.Errorf("load container: no caller token to act with: %w", api.ErrForbidden)
		}
		return &gophercloud.ServiceClient{
			ProviderClient: &gophercloud.ProviderClient{HTTPClient: l.hc},
			Endpoint:       base, ResourceBase: base + "v1/",
			MoreHeaders: map[string]string{"X-Auth-Token": token},
		}, nil
	}
	return &gophercloud.ServiceClient{
		ProviderClient: &gophercloud.ProviderClient{HTTPClient: l.hc},
		Endpoint:       base, ResourceBase: base + "v1/",
		// observer: Barbican's read-only role, enough to read a project's
		// non-private secrets and nothing more.
		MoreHeaders: map[string]string{"X-Project-Id": p.Project, "X-Roles": "observer", "X-User-Id": p.User},
	}, nil
}

// LoadContainer fetches the material ref names: a bare container id, or
// the href of a container or secret of the configured Barbican. A
// certificate container's secrets fill the matching Input fields (PEM as it
// is, DER as base64); a secret is taken as a PKCS#12 bundle.
func (l *Loader) LoadContainer(ctx context.Context, ref string) (tlsbundle.Input, error) {
	kind, id, err := l.parseRef(ref)
	if err != nil {
		return tlsbundle.Input{}, err
	}
	sc, err := l.client(ctx)
	if err != nil {
		return tlsbundle.Input{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	if kind == "secrets" {
		b, _, err := l.secret(ctx, sc, id)
		if err != nil {
			return tlsbundle.Input{}, err
		}
		return tlsbundle.Input{PKCS12: base64.StdEncoding.EncodeToString(b)}, nil
	}
	ct, err := containers.Get(ctx, sc, id).Extract()
	if err != nil {
		return tlsbundle.Input{}, refError("container "+id, err)
	}
	if ct.Type != "certificate" && ct.Type != "generic" {
		return tlsbundle.Input{}, api.Invalid(tlsbundle.CodeContainerRefUnsupported, tlsbundle.FieldContainerRef,
			fmt.Sprintf("container %s is of type %q, not a certificate container", id, ct.Type))
	}
	var in tlsbundle.Input
	for _, s := range ct.SecretRefs {
		var dst *string
		switch s.Name {
		case "certificate":
			dst = &in.Certificate
		case "private_key":
			dst = &in.PrivateKey
		case "intermediates":
			dst = &in.Intermediates
		case "private_key_passphrase":
			dst = &in.Passphrase
		default:
			continue
		}
		b, text, err := l.secret(ctx, sc, secretID(s.SecretRef))
		if err != nil {
			return tlsbundle.Input{}, err
		}
		if text || s.Name == "private_key_passphrase" {
			*dst = string(b)
		} else {
			*dst = base64.StdEncoding.EncodeToString(b) // DER: tlsbundle reads base64 DER
		}
	}
	return in, nil
}

// secret fetches a secret's payload in its stored content type; text says
// whether it is text (PEM) rather than binary (DER, PKCS#12).
func (l *Loader) secret(ctx context.Context, sc *gophercloud.ServiceClient, id string) (payload []byte, text bool, err error) {
	meta, err := secrets.Get(ctx, sc, id).Extract()
	if err != nil {
		return nil, false, refError("secret "+id, err)
	}
	ctype := meta.ContentTypes["default"]
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	b, err := secrets.GetPayload(ctx, sc, id, secrets.GetPayloadOpts{PayloadContentType: ctype}).Extract()
	if err != nil {
		return nil, false, refError("secret "+id, err)
	}
	if len(b) > maxSecretPayload {
		return nil, false, api.New(http.StatusRequestEntityTooLarge, tlsbundle.CodeInputTooLarge,
			fmt.Sprintf("secret %s is larger than %d bytes", id, maxSecretPayload))
	}
	return b, strings.HasPrefix(ctype, "text/") && utf8.Valid(b), nil
}

// refError maps what Barbican said about a referenced object.
func refError(what string, err error) error {
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		switch code.Actual {
		case http.StatusNotFound:
			return fmt.Errorf("barbican %s: %w", what, api.ErrNotFound)
		case http.StatusForbidden, http.StatusUnauthorized:
			return fmt.Errorf("barbican %s is not readable by this project: %w", what, api.ErrForbidden)
		}
	}
	return fmt.Errorf("barbican: %w", barbicanerr.Classify("load "+what, err))
}

// secretID is the id at the end of a secret's href.
func secretID(href string) string {
	return href[strings.LastIndex(href, "/")+1:]
}
