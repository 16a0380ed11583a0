package ca

import (
	"errors"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

func TestClientCertificatesNameTheirRequester(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	tests := []struct {
		name       string
		admin      bool
		req        SignRequest
		wantStatus int
	}{
		{"a member's client CSR with its own name is signed", false, SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice", orgs: []string{"dev"}})}, 0},
		{"a member's client CSR naming another user is refused", false, SignRequest{CSR: makeCSR(t, csrOptions{cn: "bob"})}, 403},
		{"a member's peer CSR naming another user is refused", false, SignRequest{CSR: makeCSR(t, csrOptions{cn: "etcd-0", dns: []string{"etcd-0.example"}}), Profile: "peer"}, 403},
		{"a member's peer CSR with its own name is signed", false, SignRequest{CSR: makeCSR(t, csrOptions{cn: "alice", dns: []string{"etcd-0.example"}}), Profile: "peer"}, 0},
		{"a member's client CSR without a CN is refused", false, SignRequest{CSR: makeCSR(t, csrOptions{dns: []string{"a.example"}})}, 403},
		{"a case variant of the name is refused", false, SignRequest{CSR: makeCSR(t, csrOptions{cn: "Alice"})}, 403},
		{"two CNs are refused even if one is the caller's", false, SignRequest{CSR: csrWithRawSubject(t, rawAttr{oidCommonName, 12, "alice"}, rawAttr{oidCommonName, 12, "bob"})}, 403},
		{"a member's server CSR keeps any CN", false, SignRequest{CSR: makeCSR(t, csrOptions{cn: "web", dns: []string{"web.example"}}), Profile: "server"}, 0},
		{"an admin signs any client subject", true, SignRequest{CSR: makeCSR(t, csrOptions{cn: "bob"})}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := member
			if tt.admin {
				p = admin
			}
			_, err := f.a.Sign(as(p), "c1", tt.req)
			status, code := codeOf(err)
			if status != tt.wantStatus {
				t.Fatalf("Sign = %d %s (%v), want %d", status, code, err, tt.wantStatus)
			}
			if tt.wantStatus == 0 {
				return
			}
			var e *api.Error
			if !errors.As(err, &e) || e.Code != api.CodeSubjectNotAllowed || len(e.Fields) != 1 ||
				e.Fields[0].Field != "csr" || !strings.Contains(e.Fields[0].Message, `"alice"`) {
				t.Fatalf("refusal %+v, want subject_not_allowed on csr naming the expected CN", e)
			}
		})
	}
}
