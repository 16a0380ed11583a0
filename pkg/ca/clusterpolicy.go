package ca

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// Limits of a cluster policy's allowed_groups.
const (
	// MaxAllowedGroups bounds the groups of allowed_groups.
	MaxAllowedGroups = 64
	// maxGroupLen bounds each group (an O attribute, as in a CSR).
	maxGroupLen = maxNameLen
)

// ClusterPolicyRequest is the body of PUT /v1/clusters/{cluster}/policy. Every
// field is optional; a PUT replaces the whole policy, so {} clears it.
type ClusterPolicyRequest struct {
	// Profiles sets the validity of certificates, by profile name
	// ("client", "server", "peer").
	Profiles map[string]ProfileLimitsRequest `json:"profiles,omitempty"`
	// AllowedGroups, when present, are the only O values (Kubernetes
	// groups) a non-admin may request; [] allows none. Privileged groups
	// (system:…, kubeadm:cluster-admins) stay refused to members whatever
	// the list says.
	AllowedGroups []string `json:"allowed_groups,omitzero"`
}

// ProfileLimitsRequest is the validity a policy sets for one profile, in
// hours; each field is optional.
type ProfileLimitsRequest struct {
	DefaultValidityHours *int `json:"default_validity_hours,omitempty"`
	MaxValidityHours     *int `json:"max_validity_hours,omitempty"`
}

// ClusterPolicy is the effective signing policy of a cluster, as GET and PUT
// /v1/clusters/{cluster}/policy answer it: for every profile, the validity
// a sign gets when it asks for none and the most it may ask for, whether
// the cluster's policy or the service's defaults set them.
type ClusterPolicy struct {
	Profiles map[string]ProfileLimits `json:"profiles"`
	// AllowedGroups is absent when members may request any group that is
	// not privileged.
	AllowedGroups []string `json:"allowed_groups,omitzero"`
}

// ProfileLimits is the effective validity of one profile, in hours.
type ProfileLimits struct {
	DefaultValidityHours int `json:"default_validity_hours"`
	MaxValidityHours     int `json:"max_validity_hours"`
}

// profiles are the signing profiles, in the order the log lists them.
var profiles = []Profile{ProfileClient, ProfileServer, ProfilePeer}

// validity is the validity a sign of one profile gets on one cluster: def
// when it asks for none, at most max.
type validity struct {
	def, max time.Duration
}

// validityFor returns the effective validity of profile under pol. Unset,
// everything is as without a policy: Options.ClientValidity or
// ServerValidity by default, Options.MaxValidity at most. A max the policy
// sets also caps the service's default, so that setting only a max makes
// certificates short-lived by default; a policy is never looser than the
// service (a value stored before Options.MaxValidity was lowered is capped
// by it).
func (a *Authority) validityFor(pol store.ClusterPolicy, profile Profile) validity {
	v := validity{def: a.opts.ClientValidity, max: a.opts.MaxValidity}
	if profile != ProfileClient {
		v.def = a.opts.ServerValidity
	}
	pp := pol.Profiles[string(profile)]
	if pp.MaxValidityHours > 0 {
		v.max = a.hoursWithinMax(pp.MaxValidityHours)
		v.def = min(v.def, v.max)
	}
	if pp.DefaultValidityHours > 0 {
		v.def = min(a.hoursWithinMax(pp.DefaultValidityHours), v.max)
	}
	return v
}

// hoursWithinMax returns h hours, at most Options.MaxValidity: compared in
// whole hours, since a stored value the service never wrote could
// overflow time.Duration.
func (a *Authority) hoursWithinMax(h int) time.Duration {
	if int64(h) >= int64(a.opts.MaxValidity/time.Hour) {
		return a.opts.MaxValidity
	}
	return time.Duration(h) * time.Hour
}

// effective returns the API view of pol.
func (a *Authority) effective(pol store.ClusterPolicy) ClusterPolicy {
	out := ClusterPolicy{Profiles: make(map[string]ProfileLimits, len(profiles))}
	for _, p := range profiles {
		v := a.validityFor(pol, p)
		out.Profiles[string(p)] = ProfileLimits{
			DefaultValidityHours: int(v.def / time.Hour),
			MaxValidityHours:     int(v.max / time.Hour),
		}
	}
	if pol.AllowedGroups != nil {
		out.AllowedGroups = slices.Clone(pol.AllowedGroups)
	}
	return out
}

// checkValidityHours refuses a validity_hours beyond the profile's max on
// the cluster (400 invalid_field, field validity_hours). Sign has already
// bounded it by Options.MaxValidity.
func checkValidityHours(v validity, profile Profile, hours int) error {
	if maxHours := int64(v.max / time.Hour); int64(hours) > maxHours {
		return api.Invalid(api.CodeInvalidField, "validity_hours",
			fmt.Sprintf("validity_hours must be between 1 and %d for a %s certificate on this cluster (its policy)", maxHours, profile))
	}
	return nil
}

// checkAllowedGroups refuses, for a non-admin, a CSR whose subject names
// (subjectNames) hold an O value that the cluster's allowed_groups (when
// set) does not list: 403 subject_not_allowed, field csr, naming the
// group. Values are compared exactly, as Kubernetes compares group names.
// Admins are not bound by the list.
func checkAllowedGroups(pol store.ClusterPolicy, names []subjectName, admin bool) error {
	if admin || pol.AllowedGroups == nil {
		return nil
	}
	for _, n := range names {
		if n.attr != "O" || slices.Contains(pol.AllowedGroups, n.value) {
			continue
		}
		msg := fmt.Sprintf("group (O) %q is not among the groups this cluster's policy allows members to request", truncate(n.value, maxNameLen))
		return &api.Error{
			Status: http.StatusForbidden, Code: api.CodeSubjectNotAllowed,
			Detail: msg,
			Fields: []api.FieldError{{Code: api.CodeSubjectNotAllowed, Field: "csr", Message: msg}},
		}
	}
	return nil
}

// validatePolicy checks a PUT body and returns the policy to store: hours
// positive, a default at most its max (the given one, else the service's),
// a max at most Options.MaxValidity, only known profile names, at most
// MaxAllowedGroups distinct groups of 1 to 64 bytes without control
// characters. Every refusal is 400 invalid_field (subject_not_allowed for a
// control character, as for a CA's common_name) naming the field's path.
func (a *Authority) validatePolicy(req ClusterPolicyRequest) (store.ClusterPolicy, error) {
	var pol store.ClusterPolicy
	serviceMax := int64(a.opts.MaxValidity / time.Hour)
	for _, name := range slices.Sorted(maps.Keys(req.Profiles)) { // the same refusal for the same body
		field := "profiles." + name
		if _, err := ParseProfile(name); err != nil {
			return pol, unknownProfile(field)
		}
		lim := req.Profiles[name]
		var pp store.ProfilePolicy
		maxHours := serviceMax
		if h := lim.MaxValidityHours; h != nil {
			if *h < 1 || int64(*h) > serviceMax {
				return pol, api.Invalid(api.CodeInvalidField, field+".max_validity_hours",
					fmt.Sprintf("%s.max_validity_hours must be between 1 and %d (the service's maximum)", field, serviceMax))
			}
			pp.MaxValidityHours, maxHours = *h, int64(*h)
		}
		if h := lim.DefaultValidityHours; h != nil {
			if *h < 1 || int64(*h) > maxHours {
				return pol, api.Invalid(api.CodeInvalidField, field+".default_validity_hours",
					fmt.Sprintf("%s.default_validity_hours must be between 1 and %d (the profile's maximum)", field, maxHours))
			}
			pp.DefaultValidityHours = *h
		}
		if pp != (store.ProfilePolicy{}) {
			if pol.Profiles == nil {
				pol.Profiles = map[string]store.ProfilePolicy{}
			}
			pol.Profiles[name] = pp
		}
	}
	if req.AllowedGroups != nil {
		if len(req.AllowedGroups) > MaxAllowedGroups {
			return pol, api.Invalid(api.CodeInvalidField, "allowed_groups",
				fmt.Sprintf("allowed_groups may list at most %d groups", MaxAllowedGroups))
		}
		pol.AllowedGroups = make([]string, 0, len(req.AllowedGroups))
		for i, g := range req.AllowedGroups {
			field := fmt.Sprintf("allowed_groups[%d]", i)
			if g == "" || len(g) > maxGroupLen {
				return pol, api.Invalid(api.CodeInvalidField, field,
					fmt.Sprintf("%s must be 1 to %d bytes", field, maxGroupLen))
			}
			if err := CheckName(field, g); err != nil {
				return pol, err
			}
			if slices.Contains(pol.AllowedGroups, g) {
				return pol, api.Invalid(api.CodeInvalidField, field,
					fmt.Sprintf("%s repeats group %q", field, g))
			}
			pol.AllowedGroups = append(pol.AllowedGroups, g)
		}
	}
	return pol, nil
}

// ClusterPolicy returns the effective signing policy of cluster, to readers of
// its project and admins.
func (a *Authority) ClusterPolicy(ctx context.Context, cluster string) (ClusterPolicy, error) {
	c, err := a.readable(ctx, cluster)
	if err != nil {
		return ClusterPolicy{}, err
	}
	return a.effective(c.Policy), nil
}

// SetClusterPolicy replaces the signing policy of cluster (admins only) and
// returns it as it now applies. The next sign on any instance follows it:
// one that remembered the old policy has its certificate refused by the
// store and signs again from a fresh read (see Sign).
func (a *Authority) SetClusterPolicy(ctx context.Context, cluster string, req ClusterPolicyRequest) (ClusterPolicy, error) {
	p, c, err := a.lookup(ctx, cluster)
	if err != nil {
		return ClusterPolicy{}, err
	}
	if !p.IsAdmin() {
		return ClusterPolicy{}, api.New(http.StatusForbidden, api.CodeForbidden,
			"only an admin may set a cluster's signing policy").
			Wrap(fmt.Errorf("user %q may not set the policy of cluster %q: %w", p.User, cluster, api.ErrForbidden))
	}
	pol, err := a.validatePolicy(req)
	if err != nil {
		return ClusterPolicy{}, err
	}
	if err := a.st.SetPolicy(ctx, cluster, pol); err != nil {
		if errors.Is(err, api.ErrNotFound) {
			return ClusterPolicy{}, caNotFound(cluster, err)
		}
		return ClusterPolicy{}, fmt.Errorf("store the policy of cluster %q: %w", cluster, err)
	}
	// The next sign here reads the new policy; another instance finds
	// its remembered reading refused by the store.
	a.signers.forget(cluster)
	a.log.Info("cluster policy set", "cluster", cluster, "project", c.Project, "user", p.User,
		"policy", policySummary(pol))
	return a.effective(pol), nil
}

// policySummary is pol in one short line for the log.
func policySummary(pol store.ClusterPolicy) string {
	if pol.IsZero() {
		return "none"
	}
	var parts []string
	for _, p := range profiles {
		if pp, ok := pol.Profiles[string(p)]; ok {
			parts = append(parts, fmt.Sprintf("%s default=%dh max=%dh", p, pp.DefaultValidityHours, pp.MaxValidityHours))
		}
	}
	if pol.AllowedGroups != nil {
		parts = append(parts, fmt.Sprintf("allowed_groups=%d", len(pol.AllowedGroups)))
	}
	return strings.Join(parts, "; ")
}

func (a *Authority) handleSetPolicy(w http.ResponseWriter, r *http.Request) error {
	var body policyBody
	if err := api.DecodeJSON(r, &body, false); err != nil {
		return err
	}
	req, err := body.request()
	if err != nil {
		return err
	}
	res, err := a.SetClusterPolicy(r.Context(), r.PathValue("cluster"), req)
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, res)
}

// policyBody is ClusterPolicyRequest on the wire: each profile's object is
// decoded on its own, strictly, so that a refusal inside it names its whole
// path ("profiles.client.max_validity_hours"), which encoding/json does not
// do for the values of a map.
type policyBody struct {
	Profiles      map[string]json.RawMessage `json:"profiles,omitempty"`
	AllowedGroups []string                   `json:"allowed_groups,omitzero"`
}

// request decodes b's profiles: an unknown profile name is 400
// invalid_field "profiles.<name>"; a refusal inside a profile's object
// names the field's whole path.
func (b policyBody) request() (ClusterPolicyRequest, error) {
	req := ClusterPolicyRequest{AllowedGroups: b.AllowedGroups}
	names := slices.Sorted(maps.Keys(b.Profiles)) // the same refusal for the same body
	for _, name := range names {
		prefix := "profiles." + name
		if _, err := ParseProfile(name); err != nil {
			return req, unknownProfile(prefix)
		}
		var lim ProfileLimitsRequest
		if err := api.DecodeJSONBytes(b.Profiles[name], &lim); err != nil {
			return req, underField(err, prefix)
		}
		if req.Profiles == nil {
			req.Profiles = map[string]ProfileLimitsRequest{}
		}
		req.Profiles[name] = lim
	}
	return req, nil
}

// underField returns err, an *api.Error about a field of the object at
// prefix (or about the object itself, field ""), with the whole path in
// its fields and messages.
func underField(err error, prefix string) error {
	var e *api.Error
	if !errors.As(err, &e) {
		return err
	}
	c := *e
	c.Fields = slices.Clone(e.Fields)
	for i, f := range c.Fields {
		whole := prefix // the object itself (a type error at its top)
		if f.Field != "" {
			whole += "." + f.Field
		}
		c.Fields[i].Field = whole
		c.Fields[i].Message = strings.ReplaceAll(f.Message, strconv.Quote(f.Field), strconv.Quote(whole))
		c.Detail = strings.ReplaceAll(c.Detail, strconv.Quote(f.Field), strconv.Quote(whole))
	}
	return &c
}

func unknownProfile(field string) error {
	return api.Invalid(api.CodeInvalidField, field,
		fmt.Sprintf("%s: unknown profile; profiles are %q, %q and %q", field, ProfileClient, ProfileServer, ProfilePeer))
}

func (a *Authority) handleShowPolicy(w http.ResponseWriter, r *http.Request) error {
	res, err := a.ClusterPolicy(r.Context(), r.PathValue("cluster"))
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, res)
}
