package ca

import (
	"net/http"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// Routes returns the native API of the CA functions (rekey-cluster and
// sign-CSR):
//
//	PUT  /v1/clusters/{cluster}/ca          create (201), same again (200)
//	GET  /v1/clusters/{cluster}/ca          show (200)
//	POST /v1/clusters/{cluster}/ca/rekey    rekey (200)
//	POST /v1/clusters/{cluster}/certificates sign a CSR (201)
//	GET  /v1/clusters/{cluster}/certificates the issued-certificate registry (200)
//	GET  /v1/clusters/{cluster}/certificates/{serial} one certificate (200)
//	GET  /v1/clusters/{cluster}/users        who holds certificates (200)
//	POST /v1/clusters/{cluster}/revocations  revoke a certificate or a user, optionally reissue (200)
//	DELETE /v1/clusters/{cluster}/revocations/users/{user} lift a user revocation (204)
//	GET  /v1/clusters/{cluster}/crl          the CRL of a CA generation (200)
func Routes(a *Authority) []api.Route {
	return []api.Route{
		{Pattern: "PUT /v1/clusters/{cluster}/ca", Name: "ca_create", Handler: a.handleCreate},
		{Pattern: "GET /v1/clusters/{cluster}/ca", Name: "ca_show", Handler: a.handleShow},
		{Pattern: "POST /v1/clusters/{cluster}/ca/rekey", Name: "ca_rekey", Handler: a.handleRekey},
		{Pattern: "POST /v1/clusters/{cluster}/certificates", Name: "ca_sign", Handler: a.handleSign},
		{Pattern: "GET /v1/clusters/{cluster}/certificates", Name: "ca_certificates", Handler: a.handleList},
		{Pattern: "GET /v1/clusters/{cluster}/certificates/{serial}", Name: "ca_certificate", Handler: a.handleCertificate},
		{Pattern: "GET /v1/clusters/{cluster}/users", Name: "ca_users", Handler: a.handleUsers},
		{Pattern: "POST /v1/clusters/{cluster}/revocations", Name: "ca_revoke", Handler: a.handleRevoke, MaxBody: 4 << 10},
		{Pattern: "DELETE /v1/clusters/{cluster}/revocations/users/{user}", Name: "ca_lift_user_revocation", Handler: a.handleLift},
		{Pattern: "GET /v1/clusters/{cluster}/crl", Name: "ca_crl", Handler: a.handleCRL},
	}
}

func (a *Authority) handleCreate(w http.ResponseWriter, r *http.Request) error {
	var req CreateRequest
	if err := api.DecodeJSON(r, &req, true); err != nil {
		return err
	}
	res, created, err := a.CreateCA(r.Context(), r.PathValue("cluster"), req)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", r.URL.EscapedPath())
	}
	return api.WriteJSON(w, status, res)
}

func (a *Authority) handleShow(w http.ResponseWriter, r *http.Request) error {
	res, err := a.CA(r.Context(), r.PathValue("cluster"))
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, res)
}

func (a *Authority) handleRekey(w http.ResponseWriter, r *http.Request) error {
	var req RekeyRequest
	if err := api.DecodeJSON(r, &req, true); err != nil {
		return err
	}
	res, err := a.Rekey(r.Context(), r.PathValue("cluster"), req)
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, res)
}

func (a *Authority) handleSign(w http.ResponseWriter, r *http.Request) error {
	var req SignRequest
	if err := api.DecodeJSON(r, &req, false); err != nil {
		return err
	}
	res, err := a.Sign(r.Context(), r.PathValue("cluster"), req)
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusCreated, res)
}
