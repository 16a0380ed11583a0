package store

import (
	"reflect"
	"strings"
	"testing"
)

func TestUnmarshalPolicy(t *testing.T) {
	for _, tc := range []struct {
		name string
		text *string
		want ClusterPolicy
		err  bool
	}{
		{name: "NULL", text: nil, want: ClusterPolicy{}},
		{name: "empty", text: ptr(""), want: ClusterPolicy{}},
		{name: "profiles", text: ptr(`{"profiles":{"client":{"max_validity_hours":2}}}`),
			want: ClusterPolicy{Profiles: map[string]ProfilePolicy{"client": {MaxValidityHours: 2}}}},
		{name: "no group allowed", text: ptr(`{"allowed_groups":[]}`), want: ClusterPolicy{AllowedGroups: []string{}}},
		{name: "groups", text: ptr(`{"allowed_groups":["dev","ops"]}`), want: ClusterPolicy{AllowedGroups: []string{"dev", "ops"}}},
		{name: "invalid", text: ptr(`{"profiles":`), err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Twice: the second decoding comes from the cache.
			for range 2 {
				got, err := UnmarshalPolicy(tc.text)
				if tc.err {
					if err == nil {
						t.Fatalf("UnmarshalPolicy = %+v, want an error", got)
					}
					continue
				}
				if err != nil || !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("UnmarshalPolicy = %#v, %v; want %#v", got, err, tc.want)
				}
			}
		})
	}
}

// TestUnmarshalPolicyDecodesATextOnce checks that a policy text read again
// (every sign reads it) is not decoded again, and that a caller changing
// what it got changes nothing for the next one.
func TestUnmarshalPolicyDecodesATextOnce(t *testing.T) {
	text := ptr(`{"profiles":{"client":{"default_validity_hours":1,"max_validity_hours":2},"server":{"max_validity_hours":5}},"allowed_groups":["dev","ops","qa"]}`)
	first, err := UnmarshalPolicy(text)
	if err != nil {
		t.Fatal(err)
	}
	want := first.clone()
	first.Profiles["client"] = ProfilePolicy{MaxValidityHours: 99}
	first.AllowedGroups[0] = "system:masters"
	again, err := UnmarshalPolicy(text)
	if err != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("second decoding = %+v, %v; want %+v", again, err, want)
	}
	// A decoding of this text costs about 30 allocations; a copy of the
	// cached one, its map and list.
	if n := testing.AllocsPerRun(100, func() { _, _ = UnmarshalPolicy(text) }); n > 4 {
		t.Fatalf("%v allocations per decoding of a known text, want at most 4", n)
	}
}

func TestPolicyCacheIsBounded(t *testing.T) {
	for i := range 2*maxCachedPolicies + 1 {
		if _, err := UnmarshalPolicy(ptr(`{"allowed_groups":["g` + strings.Repeat("x", i) + `"]}`)); err != nil {
			t.Fatal(err)
		}
	}
	if n := policies.Len(); n > maxCachedPolicies {
		t.Fatalf("%d cached policies, want at most %d", n, maxCachedPolicies)
	}
}

func ptr(s string) *string { return &s }
