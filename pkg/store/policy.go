package store

import (
	"encoding/json"
	"fmt"
)

// ClusterPolicy is what an admin set for the certificates a cluster's CA
// signs (PUT /v1/clusters/{cluster}/policy). A store keeps it as JSON text
// in the cluster's row, so that a sign reads it with the cluster and its
// active CA, in one read. The zero value sets nothing: every sign follows
// the service's defaults.
type ClusterPolicy struct {
	// Profiles sets the validity of each profile, by profile name
	// ("client", "server", "peer"); a profile absent sets nothing.
	Profiles map[string]ProfilePolicy `json:"profiles,omitempty"`
	// AllowedGroups, when not nil, are the only O values (Kubernetes
	// groups) a non-admin may request; an empty, non-nil list allows none.
	// nil sets nothing.
	AllowedGroups []string `json:"allowed_groups,omitzero"`
}

// ProfilePolicy is the validity a cluster's policy sets for one profile, in
// hours; 0 is unset.
type ProfilePolicy struct {
	// DefaultValidityHours is the validity of a sign that asks for none.
	DefaultValidityHours int `json:"default_validity_hours,omitempty"`
	// MaxValidityHours bounds the validity a sign may ask for.
	MaxValidityHours int `json:"max_validity_hours,omitempty"`
}

// IsZero reports whether p sets nothing.
func (p ClusterPolicy) IsZero() bool {
	return len(p.Profiles) == 0 && p.AllowedGroups == nil
}

// MarshalPolicy returns the stored text of p: nil (SQL NULL) when p sets
// nothing, else its JSON.
func MarshalPolicy(p ClusterPolicy) (*string, error) {
	if p.IsZero() {
		return nil, nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode cluster policy: %w", err)
	}
	s := string(b)
	return &s, nil
}

// UnmarshalPolicy decodes the stored text of a policy; nil (SQL NULL) or
// empty text is the zero policy.
func UnmarshalPolicy(text *string) (ClusterPolicy, error) {
	var p ClusterPolicy
	if text == nil || *text == "" {
		return p, nil
	}
	if err := json.Unmarshal([]byte(*text), &p); err != nil {
		return ClusterPolicy{}, fmt.Errorf("decode cluster policy: %w", err)
	}
	return p, nil
}
