package ca

import (
	"context"
	"net/http"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// MaxListedCertificates bounds one registry listing; the newest come first.
const MaxListedCertificates = 1000

// IssuedCertificate is one entry of a cluster's issued-certificate registry
// as the API shows it.
type IssuedCertificate struct {
	Serial       string    `json:"serial"`
	Subject      string    `json:"subject"`
	Profile      string    `json:"profile"`
	User         string    `json:"requester_user"`
	Project      string    `json:"requester_project"`
	CAGeneration int       `json:"ca_generation"`
	IssuedAt     time.Time `json:"issued_at"`
	NotBefore    time.Time `json:"not_before"`
	NotAfter     time.Time `json:"not_after"`
	// RevokedAt is when the certificate stopped verifying against the trust
	// bundle (its CA was rekeyed away); absent while it verifies.
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// Status is "valid", "revoked" or "expired", at the time of the listing.
	Status string `json:"status"`
	// Privileged marks a subject Kubernetes treats as powerful (a CN or O
	// beginning "system:", O=kubeadm:cluster-admins), issued to an admin.
	Privileged bool `json:"privileged"`
}

// CertificateList is the answer of GET /v1/clusters/{cluster}/certificates.
type CertificateList struct {
	Cluster      string              `json:"cluster"`
	Certificates []IssuedCertificate `json:"certificates"`
	// Truncated says the registry holds more than MaxListedCertificates.
	Truncated bool `json:"truncated"`
}

// Certificates lists the certificates issued for cluster, newest first, for
// audit: who asked for what, under which CA generation, and whether it
// still verifies. Reading it needs read access to the cluster's project.
func (a *Authority) Certificates(ctx context.Context, cluster string) (CertificateList, error) {
	p, err := principal(ctx)
	if err != nil {
		return CertificateList{}, err
	}
	if err := ValidateClusterName(cluster); err != nil {
		return CertificateList{}, err
	}
	c, err := a.cluster(ctx, cluster)
	if err != nil {
		return CertificateList{}, err
	}
	if err := p.AuthorizeRead(c.Project); err != nil {
		return CertificateList{}, err
	}
	recs, err := a.st.Certificates(ctx, cluster)
	if err != nil {
		return CertificateList{}, err
	}
	now := a.now().UTC()
	out := CertificateList{Cluster: cluster, Certificates: []IssuedCertificate{}}
	for i, r := range recs {
		if i == MaxListedCertificates {
			out.Truncated = true
			break
		}
		ic := IssuedCertificate{
			Serial: r.Serial, Subject: r.Subject, Profile: r.Profile, User: r.User, Project: r.Project,
			CAGeneration: r.Generation, IssuedAt: r.IssuedAt.UTC(), NotBefore: r.NotBefore.UTC(), NotAfter: r.NotAfter.UTC(),
			Status: "valid", Privileged: r.Privileged,
		}
		if !r.RevokedAt.IsZero() {
			t := r.RevokedAt.UTC()
			ic.RevokedAt = &t
			if !t.After(now) {
				ic.Status = "revoked"
			}
		}
		if ic.Status == "valid" && !r.NotAfter.After(now) {
			ic.Status = "expired"
		}
		out.Certificates = append(out.Certificates, ic)
	}
	return out, nil
}

func (a *Authority) handleList(w http.ResponseWriter, r *http.Request) error {
	res, err := a.Certificates(r.Context(), r.PathValue("cluster"))
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, res)
}
