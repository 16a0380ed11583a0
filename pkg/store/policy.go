package store

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	lru "github.com/hashicorp/golang-lru/v2"
)

// ClusterPolicy is what an admin set for the certificates a cluster's CA
// signs (PUT /v1/clusters/{cluster}/policy). A store keeps it as JSON text
// in the cluster's row, so that a sign that reads the cluster (one that
// does not remember a reading, see IssuedCertificate.RequirePolicy) reads
// it with the cluster and its active CA, in one read. The zero value sets
// nothing: every sign follows the service's defaults.
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
// empty text is the zero policy. Every read of a cluster's row decodes
// the policy, so decoded policies are kept by their exact text (see
// policies): the same text is decoded once, and each caller gets its own
// copy.
func UnmarshalPolicy(text *string) (ClusterPolicy, error) {
	if text == nil || *text == "" {
		return ClusterPolicy{}, nil
	}
	if p, ok := policies.Get(*text); ok {
		return p.clone(), nil
	}
	p, err := decodePolicy(*text)
	if err != nil {
		return ClusterPolicy{}, err
	}
	policies.Add(*text, p)
	return p.clone(), nil
}

// decodePolicy decodes text, apart so that only a decoding puts a policy
// on the heap (json.Unmarshal keeps its pointer), not every NULL read.
func decodePolicy(text string) (ClusterPolicy, error) {
	var p ClusterPolicy
	if err := json.Unmarshal([]byte(text), &p); err != nil {
		return ClusterPolicy{}, fmt.Errorf("decode cluster policy: %w", err)
	}
	return p, nil
}

// clone returns a copy of p that shares nothing with it (a nil map or
// list stays nil, an empty one empty).
func (p ClusterPolicy) clone() ClusterPolicy {
	return ClusterPolicy{Profiles: maps.Clone(p.Profiles), AllowedGroups: slices.Clone(p.AllowedGroups)}
}

// maxCachedPolicies bounds the decoded policies kept; past it, the least
// recently used one goes.
const maxCachedPolicies = 256

// policies maps the stored text of a policy to its decoding. It is keyed
// by the text itself, which every read returns: a policy that another
// instance changed has another text, so nothing here can be stale, and a
// text is only ever cached once it decoded.
var policies = mustLRU[string, ClusterPolicy](maxCachedPolicies)

// mustLRU returns an LRU cache of size entries (size > 0).
func mustLRU[K comparable, V any](size int) *lru.Cache[K, V] {
	c, err := lru.New[K, V](size)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	return c
}

// PolicyScanner scans a policy column (text, or NULL for the zero policy)
// into Dst. It is a database/sql Scanner, which pgx also uses for a text
// column; a string is taken as is, without the copy sql.NullString makes.
type PolicyScanner struct{ Dst *ClusterPolicy }

// Scan implements sql.Scanner.
func (s PolicyScanner) Scan(src any) error {
	var text *string
	switch v := src.(type) {
	case nil:
	case string:
		text = &v
	case []byte:
		t := string(v)
		text = &t
	default:
		return fmt.Errorf("policy column holds a %T", src)
	}
	p, err := UnmarshalPolicy(text)
	if err != nil {
		return err
	}
	*s.Dst = p
	return nil
}

// RequiredPolicyText returns the stored text (MarshalPolicy) of
// c.RequirePolicy, which a store compares with the cluster's, or nil when
// c requires no policy (or the zero policy, stored as NULL).
func RequiredPolicyText(c IssuedCertificate) (*string, error) {
	if c.RequirePolicy == nil {
		return nil, nil
	}
	return MarshalPolicy(*c.RequirePolicy)
}
