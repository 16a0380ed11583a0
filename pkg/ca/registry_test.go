package ca

import (
	"errors"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

func TestRegistryStatusFollowsGraceAndExpiry(t *testing.T) {
	f := newFixture(t, Options{})
	f.mustCreate(t, "c1", CreateRequest{})
	old := signClient(t, f, "c1")
	grace := int64(3600)
	if _, err := f.a.Rekey(as(member), "c1", RekeyRequest{GracePeriodSeconds: &grace}); err != nil {
		t.Fatal(err)
	}
	fresh := signClient(t, f, "c1")
	status := func() map[string]string {
		t.Helper()
		list, err := f.a.Certificates(as(member), "c1")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, c := range list.Certificates {
			out[c.Serial] = c.Status
		}
		return out
	}
	if got := status(); got[old.Serial] != "valid" || got[fresh.Serial] != "valid" {
		t.Fatalf("during the grace period: %v", got)
	}
	f.clock.Advance(61 * time.Minute)
	if got := status(); got[old.Serial] != "revoked" || got[fresh.Serial] != "valid" {
		t.Fatalf("after the grace period: %v", got)
	}
	f.clock.Advance(24 * 400 * time.Hour)
	if got := status(); got[fresh.Serial] != "expired" {
		t.Fatalf("after its validity: %v", got)
	}
	if _, err := f.a.Certificates(as(member), "nope"); !errors.Is(err, api.ErrNotFound) && api.ErrorFor(err).Status != 404 {
		t.Fatalf("unknown cluster: %v", err)
	}
}
