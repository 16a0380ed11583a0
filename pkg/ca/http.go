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
//	PUT  /v1/clusters/{cluster}/policy      set the signing policy (200, admin)
//	GET  /v1/clusters/{cluster}/policy      show the signing policy (200)
func Routes(a *Authority) []api.Route {
	return []api.Route{
		{Pattern: "PUT /v1/clusters/{cluster}/ca", Name: "ca_create", Handler: a.handleCreate},
		{Pattern: "GET /v1/clusters/{cluster}/ca", Name: "ca_show", Handler: a.handleShow},
		{Pattern: "POST /v1/clusters/{cluster}/ca/rekey", Name: "ca_rekey", Handler: a.handleRekey},
		{Pattern: "POST /v1/clusters/{cluster}/certificates", Name: "ca_sign", Handler: a.handleSign},
		{Pattern: "GET /v1/clusters/{cluster}/certificates", Name: "ca_certificates", Handler: a.handleList},
		{Pattern: "PUT /v1/clusters/{cluster}/policy", Name: "ca_policy_set", Handler: a.handleSetPolicy},
		{Pattern: "GET /v1/clusters/{cluster}/policy", Name: "ca_policy_show", Handler: a.handleShowPolicy},
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
