package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// testPolicy: SetPolicy stores a cluster's policy in the cluster's row, so
// that Cluster and ActiveCA (the one read of a sign) return it, another
// handle on the database sees it at once, a rekey keeps it, the zero policy
// clears it, and nil and empty allowed groups stay apart.
func testPolicy(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, another := newStore(t)
	CreateCluster(t, d, "prod")
	CreateCluster(t, d, "other")
	second := another()

	full := store.ClusterPolicy{
		Profiles: map[string]store.ProfilePolicy{
			"client": {DefaultValidityHours: 8, MaxValidityHours: 24},
			"server": {MaxValidityHours: 2160},
			"peer":   {DefaultValidityHours: 720},
		},
		AllowedGroups: []string{"developers", "viewers", "ünïcode gröup"},
	}
	noGroups := store.ClusterPolicy{AllowedGroups: []string{}}

	read := func(t *testing.T, s Store, cluster string) (fromCluster, fromActive store.ClusterPolicy) {
		t.Helper()
		c, err := s.Cluster(ctx, cluster)
		if err != nil {
			t.Fatalf("Cluster(%s): %v", cluster, err)
		}
		ac, _, err := s.ActiveCA(ctx, cluster)
		if err != nil {
			t.Fatalf("ActiveCA(%s): %v", cluster, err)
		}
		return c.Policy, ac.Policy
	}

	if p, ap := read(t, d, "prod"); !p.IsZero() || !ap.IsZero() {
		t.Fatalf("a new cluster has policy %+v / %+v, want none", p, ap)
	}

	steps := []struct {
		name string
		set  store.ClusterPolicy
	}{
		{"every field", full},
		{"an empty allowed list is not an absent one", noGroups},
		{"one profile only", store.ClusterPolicy{Profiles: map[string]store.ProfilePolicy{"client": {MaxValidityHours: 1}}}},
		{"the zero policy clears it", store.ClusterPolicy{}},
		{"set again after clearing", full},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := d.SetPolicy(ctx, "prod", st.set); err != nil {
				t.Fatal(err)
			}
			for name, s := range map[string]Store{"same handle": d, "another handle": second} {
				p, ap := read(t, s, "prod")
				if !reflect.DeepEqual(p, st.set) || !reflect.DeepEqual(ap, st.set) {
					t.Fatalf("%s: Cluster policy %#v, ActiveCA policy %#v, want %#v", name, p, ap, st.set)
				}
			}
			if p, _ := read(t, d, "other"); !p.IsZero() {
				t.Fatalf("another cluster got policy %+v", p)
			}
		})
	}

	t.Run("a rekey keeps the policy", func(t *testing.T) {
		now := T0.Add(48 * time.Hour)
		if err := d.Rekey(ctx, "prod", 1, Generation("prod", 2), now, now); err != nil {
			t.Fatal(err)
		}
		c, g, err := second.ActiveCA(ctx, "prod")
		if err != nil {
			t.Fatal(err)
		}
		if g.Generation != 2 || !reflect.DeepEqual(c.Policy, full) {
			t.Fatalf("after a rekey: generation %d, policy %#v", g.Generation, c.Policy)
		}
	})

	t.Run("a missing cluster is not found", func(t *testing.T) {
		if err := d.SetPolicy(ctx, "nope", full); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("SetPolicy(nope) = %v, want ErrNotFound", err)
		}
		if _, err := d.Cluster(ctx, "nope"); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("SetPolicy created cluster nope: %v", err)
		}
	})
}

// testRecordRequiringPolicy: a certificate recorded with RequirePolicy
// (a sign that used a cached reading of the cluster) is recorded while the
// policy it names is the cluster's, whatever the handle that set it, and
// refused with store.ErrPolicyChanged, recording nothing, once another
// handle (another instance) set a different one; the zero policy matches a
// cluster without one.
func testRecordRequiringPolicy(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	d, another := newStore(t)
	second := another()
	CreateCluster(t, d, "prod")
	strict := store.ClusterPolicy{Profiles: map[string]store.ProfilePolicy{"client": {MaxValidityHours: 1}}}
	loose := store.ClusterPolicy{Profiles: map[string]store.ProfilePolicy{"client": {MaxValidityHours: 24}}, AllowedGroups: []string{}}

	n := 0
	record := func(t *testing.T, s Store, p store.ClusterPolicy) (string, error) {
		t.Helper()
		n++
		c := active(Cert("prod", 1, n))
		c.RequirePolicy = &p
		return c.Serial, s.RecordCertificate(ctx, c)
	}
	steps := []struct {
		name    string
		set     *store.ClusterPolicy // set by the second handle first, if not nil
		require store.ClusterPolicy
		want    error
	}{
		{"the zero policy matches a cluster without one", nil, store.ClusterPolicy{}, nil},
		{"a policy the cluster does not have is refused", nil, strict, store.ErrPolicyChanged},
		{"the policy another handle set is required", &strict, strict, nil},
		{"the policy read before another handle changed it is refused", &loose, strict, store.ErrPolicyChanged},
		{"the zero policy is refused once a policy is set", nil, store.ClusterPolicy{}, store.ErrPolicyChanged},
		{"the new policy is recorded", nil, loose, nil},
		{"cleared by another handle: the zero policy matches again", &store.ClusterPolicy{}, store.ClusterPolicy{}, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.set != nil {
				if err := second.SetPolicy(ctx, "prod", *st.set); err != nil {
					t.Fatal(err)
				}
			}
			serial, err := record(t, d, st.require)
			if !errors.Is(err, st.want) || (st.want == nil) != (err == nil) {
				t.Fatalf("RecordCertificate = %v, want %v", err, st.want)
			}
			certs, err := d.Certificates(ctx, store.CertificateQuery{Cluster: "prod", Serial: serial, Limit: 10, Now: T0})
			if err != nil {
				t.Fatal(err)
			}
			if recorded := len(certs) == 1; recorded != (st.want == nil) {
				t.Fatalf("recorded %v after %v", recorded, st.want)
			}
		})
	}
	t.Run("a retired generation is still the refusal it was", func(t *testing.T) {
		if err := second.Rekey(ctx, "prod", 1, Generation("prod", 2), T0, T0); err != nil {
			t.Fatal(err)
		}
		if _, err := record(t, d, store.ClusterPolicy{}); !errors.Is(err, api.ErrGenerationMismatch) {
			t.Fatalf("RecordCertificate under a retired generation = %v, want ErrGenerationMismatch", err)
		}
	})
}
