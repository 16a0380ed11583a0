// Package magnum is the Magnum-compatible certificate API, an adapter on
// top of the cluster CA (pkg/ca): python-magnumclient and "openstack coe
// ca sign|show|rotate" work unchanged against clusterkeys. It speaks
// Magnum's bodies, microversion headers and {"errors":[…]} errors, and
// calls the CA's exported API, whose policy applies as to the native API.
package magnum

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/ca"
)

// Magnum microversions (magnum/api/controllers/versions.py): requests
// name one with "OpenStack-API-Version: container-infra 1.x" or "latest";
// responses give the version served and the range. Every 1.x is accepted
// (the certificate API is the same in all of them) and served as the
// nearest version of [MinVersion, MaxVersion].
const (
	MinVersion = "1.1"
	MaxVersion = "1.11"
	// CodeUnsupportedVersion is the code of a 406 for a major version
	// other than 1, another service or a malformed header.
	CodeUnsupportedVersion = "unsupported_api_version"
	versionHeader          = "OpenStack-API-Version"
	serviceType            = "container-infra"
)

// Certificate is the body python-magnumclient sends to
// POST /v1/certificates and reads back. bay_uuid is the pre-Pike name of
// cluster_uuid; ca_cert_type selects Magnum's CA ("kubernetes" is the only
// one here).
type Certificate struct {
	ClusterUUID string `json:"cluster_uuid"`
	BayUUID     string `json:"bay_uuid,omitempty"`
	CSR         string `json:"csr,omitempty"`
	CACertType  string `json:"ca_cert_type,omitempty"`
	PEM         string `json:"pem,omitempty"`
	Links       []Link `json:"links,omitempty"`
}

// Link is Magnum's link object (magnum/api/controllers/link.py).
type Link struct {
	Href string `json:"href"`
	Rel  string `json:"rel"`
}

// Routes returns the Magnum-compatible certificate API over a, so that
// python-magnumclient and "openstack coe ca sign|show|rotate" work
// unchanged against clusterkeys:
//
//	POST  /v1/certificates            {"cluster_uuid","csr"} → 201 {"cluster_uuid","csr","pem","links"}
//	GET   /v1/certificates/{cluster}  → 200 {"cluster_uuid","pem","links"}
//	PATCH /v1/certificates/{cluster}  rotate the CA, grace 0 → 202 {"uuid"}
//	GET   /v1/clusters/{cluster}      → 200 {"uuid","name","links"}
//
// The last is the part of Magnum's cluster resource that "openstack coe ca
// sign|show|rotate" reads first to turn a cluster name into its UUID; here
// the cluster name is its UUID.
//
// Signing uses the client profile and the same policy as the native API.
// Errors are Magnum's {"errors":[…]}. Links start with publicURL (config
// --public-url), relative ("/v1/…") when it is empty.
func Routes(a Authority, publicURL string) []api.Route {
	s := &service{a: a, publicURL: strings.TrimRight(publicURL, "/")}
	return []api.Route{
		{Pattern: "POST /v1/certificates", Name: "magnum_ca_sign", Handler: versioned(s.handleSign), Format: api.MagnumErrors},
		{Pattern: "GET /v1/certificates/{cluster}", Name: "magnum_ca_show", Handler: versioned(s.handleShow), Format: api.MagnumErrors},
		{Pattern: "PATCH /v1/certificates/{cluster}", Name: "magnum_ca_rotate", Handler: versioned(s.handleRotate), Format: api.MagnumErrors},
		{Pattern: "GET /v1/clusters/{cluster}", Name: "magnum_cluster_show", Handler: versioned(s.handleCluster), Format: api.MagnumErrors},
	}
}

// service serves the routes.
type service struct {
	a         Authority
	publicURL string
}

// versioned checks the OpenStack-API-Version header as Magnum does
// and sets Magnum's version headers on every response, errors included.
func versioned(h api.HandlerFunc) api.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		hdr := w.Header()
		hdr.Set("OpenStack-API-Minimum-Version", serviceType+" "+MinVersion)
		hdr.Set("OpenStack-API-Maximum-Version", serviceType+" "+MaxVersion)
		hdr.Add("Vary", versionHeader)
		v, err := version(r.Header.Get(versionHeader))
		if err != nil {
			return err
		}
		hdr.Set(versionHeader, serviceType+" "+v)
		return h(w, r)
	}
}

// version returns the microversion served for a request header:
// the minimum without one, the maximum for "latest", and for 1.x the
// requested minor brought into [MinVersion, MaxVersion].
func version(h string) (string, error) {
	if strings.TrimSpace(h) == "" {
		return MinVersion, nil
	}
	fields := strings.Fields(h)
	if len(fields) != 2 || fields[0] != serviceType {
		return "", api.New(http.StatusNotAcceptable, CodeUnsupportedVersion,
			"Invalid service type for OpenStack-API-Version header")
	}
	if strings.EqualFold(fields[1], "latest") {
		return MaxVersion, nil
	}
	v, ok := parseMicroversion(fields[1])
	if !ok {
		return "", api.New(http.StatusNotAcceptable, CodeUnsupportedVersion,
			"Invalid value for OpenStack-API-Version header")
	}
	lo, _ := parseMicroversion(MinVersion)
	hi, _ := parseMicroversion(MaxVersion)
	if v[0] != lo[0] {
		asked := fields[1]
		if len(asked) > 16 {
			asked = asked[:16] + "…"
		}
		return "", api.New(http.StatusNotAcceptable, CodeUnsupportedVersion,
			fmt.Sprintf("Version %s was requested but the major version is not supported by this service. The supported version range is: [%s, %s].",
				asked, MinVersion, MaxVersion))
	}
	switch {
	case v[1] < lo[1]:
		v = lo
	case v[1] > hi[1]:
		v = hi
	}
	return fmt.Sprintf("%d.%d", v[0], v[1]), nil
}

// parseMicroversion parses "major.minor". A minor too large for an int is
// kept as the largest int: it is still a 1.x above the maximum.
func parseMicroversion(s string) ([2]int, bool) {
	major, minor, ok := strings.Cut(s, ".")
	if !ok {
		return [2]int{}, false
	}
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(minor)
	if errors.Is(err2, strconv.ErrRange) && mi > 0 {
		err2 = nil
	}
	if err1 != nil || err2 != nil || ma < 0 || mi < 0 {
		return [2]int{}, false
	}
	return [2]int{ma, mi}, true
}

// links are Magnum's self and bookmark links of a resource
// (magnum.api.controllers.link.build_url): "certificates" or "clusters".
// Magnum bases them on its configured public_endpoint; here on
// the public URL, or "" (links relative to the server) when unset. The
// request's Host and X-Forwarded-Proto are never used: a client could
// point the links anywhere. python-magnumclient does not follow them.
func (s *service) links(resource, cluster string) []Link {
	base := s.publicURL
	c := url.PathEscape(cluster)
	return []Link{
		{Href: base + "/v1/" + resource + "/" + c, Rel: "self"},
		{Href: base + "/" + resource + "/" + c, Rel: "bookmark"},
	}
}

func checkCACertType(t string) error {
	if t != "" && t != "kubernetes" {
		return api.Invalid(api.CodeInvalidField, "ca_cert_type", `ca_cert_type must be "kubernetes"`)
	}
	return nil
}

func (s *service) handleSign(w http.ResponseWriter, r *http.Request) error {
	var req Certificate
	if err := api.DecodeJSON(r, &req, false); err != nil {
		return err
	}
	if req.PEM != "" || req.Links != nil {
		return api.Invalid(api.CodeInvalidField, "pem", "pem and links are read-only")
	}
	cluster := req.ClusterUUID
	if cluster == "" {
		cluster = req.BayUUID
	}
	if cluster == "" {
		return api.Invalid(api.CodeInvalidField, "cluster_uuid", "cluster_uuid is required")
	}
	if err := checkCACertType(req.CACertType); err != nil {
		return err
	}
	res, err := s.a.Sign(r.Context(), cluster, ca.SignRequest{CSR: req.CSR, Profile: string(ca.ProfileClient)})
	if err != nil {
		var e *api.Error
		if errors.As(err, &e) && e.Code == api.CodeCANotFound {
			// Magnum: an unknown cluster in a POST body is a bad request.
			c := *e
			c.Status = http.StatusBadRequest
			return &c
		}
		return err
	}
	return api.WriteJSON(w, http.StatusCreated, Certificate{
		ClusterUUID: cluster, CSR: req.CSR, CACertType: req.CACertType,
		PEM: res.Certificate, Links: s.links("certificates", cluster),
	})
}

func (s *service) handleShow(w http.ResponseWriter, r *http.Request) error {
	cluster := r.PathValue("cluster")
	if err := checkCACertType(r.URL.Query().Get("ca_cert_type")); err != nil {
		return err
	}
	res, err := s.a.CA(r.Context(), cluster)
	if err != nil {
		return err
	}
	// The trust bundle, not only the active CA: during a grace period a
	// client written against Magnum then trusts both generations.
	return api.WriteJSON(w, http.StatusOK, Certificate{
		ClusterUUID: cluster, PEM: res.TrustBundle, Links: s.links("certificates", cluster),
	})
}

func (s *service) handleRotate(w http.ResponseWriter, r *http.Request) error {
	// python-magnumclient sends no body (Content-Type
	// application/octet-stream); whatever is sent is ignored, as Magnum does.
	cluster := r.PathValue("cluster")
	var zero int64
	if _, err := s.a.Rekey(r.Context(), cluster, ca.RekeyRequest{GracePeriodSeconds: &zero}); err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusAccepted, map[string]string{"uuid": cluster})
}

// Cluster is the subset of Magnum's cluster resource clients need to
// address a cluster's certificates.
type Cluster struct {
	UUID  string `json:"uuid"`
	Name  string `json:"name"`
	Links []Link `json:"links"`
}

func (s *service) handleCluster(w http.ResponseWriter, r *http.Request) error {
	cluster := r.PathValue("cluster")
	if _, err := s.a.CA(r.Context(), cluster); err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, Cluster{UUID: cluster, Name: cluster, Links: s.links("clusters", cluster)})
}
