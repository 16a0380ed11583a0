package ca

import (
	"crypto/x509"
	"fmt"
	"net/http"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// CheckRequester applies the subject rule that makes per-user revocation
// mean something: a certificate that authenticates a client (profiles
// client and peer carry clientAuth) issued to a non-admin must name the
// caller, with exactly one CN equal to user. Otherwise alice could obtain a
// certificate named bob, and revoking alice would not revoke it. It answers
// 403 subject_not_allowed with field csr, naming the expected CN (a user
// name is not a secret). Admins sign any subject (node and service
// certificates); server certificates keep their SAN rules only.
func CheckRequester(csr *x509.CertificateRequest, profile Profile, user string, admin bool) error {
	if admin || profile == ProfileServer {
		return nil
	}
	names, err := subjectNames(csr)
	if err != nil {
		return err
	}
	return checkRequesterNames(names, profile, user, admin)
}

// checkRequesterNames is CheckRequester on the subjectNames of a CSR.
func checkRequesterNames(names []subjectName, profile Profile, user string, admin bool) error {
	if admin || profile == ProfileServer {
		return nil
	}
	var cns []string
	for _, n := range names {
		if n.attr == "CN" {
			cns = append(cns, n.value)
		}
	}
	if len(cns) == 1 && cns[0] == user && user != "" {
		return nil
	}
	msg := fmt.Sprintf("a %s certificate must have exactly one CN, your user name %q", profile, truncate(user, 2*maxNameLen))
	return &api.Error{
		Status: http.StatusForbidden, Code: api.CodeSubjectNotAllowed,
		Detail: "a client certificate must name its requester: " + msg,
		Fields: []api.FieldError{{Code: api.CodeSubjectNotAllowed, Field: "csr", Message: msg}},
	}
}
