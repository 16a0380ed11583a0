package ca

import (
	"context"
	"errors"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// The fake store predates issue 12: the revocation tests run against the
// real SQLite store (revoke_test.go). These only satisfy the interface.

var errFakeRevocation = errors.New("the fake store does not implement revocations; use the SQLite store")

func (s *fakeStore) Certificate(context.Context, string, string) (store.IssuedCertificate, error) {
	return store.IssuedCertificate{}, errFakeRevocation
}

func (s *fakeStore) RevokeCertificate(context.Context, store.Revocation) ([]string, error) {
	return nil, errFakeRevocation
}

func (s *fakeStore) RevokeUser(context.Context, store.Revocation) ([]string, error) {
	return nil, errFakeRevocation
}

func (s *fakeStore) LiftUserRevocation(context.Context, string, string) error {
	return errFakeRevocation
}

func (s *fakeStore) UserRevocations(context.Context, string, int) ([]store.UserRevocation, error) {
	return nil, errFakeRevocation
}

func (s *fakeStore) Users(context.Context, string, time.Time, int) ([]store.UserCount, error) {
	return nil, errFakeRevocation
}

func (s *fakeStore) CRLEntries(context.Context, string, int, time.Time) ([]store.IssuedCertificate, error) {
	return nil, errFakeRevocation
}

func (s *fakeStore) CRL(context.Context, string, int) (store.CRL, int64, error) {
	return store.CRL{}, 0, errFakeRevocation
}

func (s *fakeStore) NextCRLNumber(context.Context, string) (int64, error) {
	return 0, errFakeRevocation
}

func (s *fakeStore) PutCRL(context.Context, store.CRL) error { return errFakeRevocation }

func (s *fakeStore) ReissueCandidates(context.Context, string, time.Time) ([]store.IssuedCertificate, error) {
	return nil, errFakeRevocation
}

func (s *fakeStore) Reissue(context.Context, store.Reissue) ([]string, error) {
	return nil, errFakeRevocation
}
