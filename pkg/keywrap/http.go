package keywrap

import (
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/store"
)

// MaxBody is the request body limit of the wrap and unwrap routes: a
// DefaultMaxPlaintext plaintext in base64 plus a MaxAAD aad in base64 and
// the JSON around them.
const MaxBody = 128 << 10

// CreateRequest is the body of POST /v1/keys.
type CreateRequest struct {
	Name string `json:"name"`
	// ProjectID defaults to the caller's project.
	ProjectID string `json:"project_id,omitempty"`
}

// KeyResource is a KEK on the wire; Versions are oldest first.
type KeyResource struct {
	Name          string            `json:"name"`
	ProjectID     string            `json:"project_id"`
	ActiveVersion int               `json:"active_version"`
	Versions      []VersionResource `json:"versions"`
	CreatedAt     time.Time         `json:"created_at"`
}

// VersionResource is one KEK version on the wire.
type VersionResource struct {
	Version   int       `json:"version"`
	KeyID     string    `json:"key_id"`
	CreatedAt time.Time `json:"created_at"`
}

// WrapRequest is the body of POST /v1/keys/{key}/wrap.
type WrapRequest struct {
	Plaintext *string `json:"plaintext"` // base64
	AAD       string  `json:"aad,omitempty"`
}

// WrapResponse answers a wrap.
type WrapResponse struct {
	Ciphertext string `json:"ciphertext"` // base64
	KeyVersion int    `json:"key_version"`
}

// UnwrapRequest is the body of POST /v1/keys/{key}/unwrap.
type UnwrapRequest struct {
	Ciphertext *string `json:"ciphertext"` // base64
	AAD        string  `json:"aad,omitempty"`
}

// UnwrapResponse answers an unwrap.
type UnwrapResponse struct {
	Plaintext  string `json:"plaintext"` // base64
	KeyVersion int    `json:"key_version"`
}

// RotateRequest is the (optional) body of POST /v1/keys/{key}/rotate.
type RotateRequest struct {
	// ExpectedVersion, when set, must be the active version (else 409
	// generation_mismatch).
	ExpectedVersion *int `json:"expected_version,omitempty"`
}

// Routes returns the native API of the wrap/unwrap function:
//
//	POST /v1/keys               create a KEK (201), same again (200)
//	GET  /v1/keys/{key}         show (200)
//	POST /v1/keys/{key}/wrap    wrap (200)
//	POST /v1/keys/{key}/unwrap  unwrap (200)
//	POST /v1/keys/{key}/rotate  rotate (200)
//
// Admins may do everything; members create, wrap, unwrap and rotate their
// own project's keys; readers only show them.
func Routes(s *Service) []api.Route {
	return []api.Route{
		{Pattern: "POST /v1/keys", Name: "key_create", Handler: s.handleCreate},
		{Pattern: "GET /v1/keys/{key}", Name: "key_show", Handler: s.handleShow},
		{Pattern: "POST /v1/keys/{key}/wrap", Name: "key_wrap", Handler: s.handleWrap, MaxBody: MaxBody},
		{Pattern: "POST /v1/keys/{key}/unwrap", Name: "key_unwrap", Handler: s.handleUnwrap, MaxBody: MaxBody},
		{Pattern: "POST /v1/keys/{key}/rotate", Name: "key_rotate", Handler: s.handleRotate},
	}
}

func principal(r *http.Request) (auth.Principal, error) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		return auth.Principal{}, fmt.Errorf("no principal on a protected route: %w", api.ErrUnauthenticated)
	}
	return p, nil
}

// authorize checks that the caller may act on KEK name: read (show) or
// write (everything else), else 403 forbidden, as the CA routes do.
func (s *Service) authorize(r *http.Request, name string, write bool) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	project, err := s.Project(r.Context(), name)
	if err != nil {
		return err
	}
	if write {
		return p.AuthorizeWrite(project)
	}
	return p.AuthorizeRead(project)
}

func resource(k store.KEK, vs []store.KEKVersion) KeyResource {
	res := KeyResource{
		Name:          k.Name,
		ProjectID:     k.Project,
		ActiveVersion: k.ActiveVersion,
		Versions:      make([]VersionResource, 0, len(vs)),
		CreatedAt:     k.CreatedAt.UTC(),
	}
	for _, v := range vs {
		res.Versions = append(res.Versions, VersionResource{Version: v.Version, KeyID: v.KeyID, CreatedAt: v.CreatedAt.UTC()})
	}
	slices.SortFunc(res.Versions, func(a, b VersionResource) int { return cmp.Compare(a.Version, b.Version) })
	return res
}

func (s *Service) writeKey(w http.ResponseWriter, r *http.Request, name string, status int) error {
	k, vs, err := s.Key(r.Context(), name)
	if err != nil {
		return err
	}
	return api.WriteJSON(w, status, resource(k, vs))
}

func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	var req CreateRequest
	if err := api.DecodeJSON(r, &req, false); err != nil {
		return err
	}
	if err := ValidateName(req.Name); err != nil {
		return err
	}
	project, err := p.AuthorizeCreate(req.ProjectID)
	if err != nil {
		return fmt.Errorf("create KEK %q: %w", req.Name, err)
	}
	_, _, created, err := s.Create(r.Context(), req.Name, project)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/keys/"+req.Name)
	}
	return s.writeKey(w, r, req.Name, status)
}

func (s *Service) handleShow(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("key")
	if err := s.authorize(r, name, false); err != nil {
		return err
	}
	return s.writeKey(w, r, name, http.StatusOK)
}

func decodeB64(field, s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, api.Invalid(api.CodeInvalidField, field, field+" must be standard base64 (RFC 4648 section 4, padded)")
	}
	return b, nil
}

// requiredB64 is decodeB64 of a field that must be present and not empty.
func requiredB64(field string, s *string) ([]byte, error) {
	if s == nil || *s == "" {
		return nil, api.Invalid(api.CodeInvalidField, field, field+" is required (base64)")
	}
	return decodeB64(field, *s)
}

func (s *Service) handleWrap(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("key")
	var req WrapRequest
	if err := api.DecodeJSON(r, &req, false); err != nil {
		return err
	}
	plaintext, err := requiredB64("plaintext", req.Plaintext)
	if err != nil {
		return err
	}
	defer clear(plaintext)
	aad, err := decodeB64("aad", req.AAD)
	if err != nil {
		return err
	}
	if err := s.authorize(r, name, true); err != nil {
		return err
	}
	ct, v, err := s.Wrap(r.Context(), name, plaintext, aad)
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, WrapResponse{Ciphertext: base64.StdEncoding.EncodeToString(ct), KeyVersion: v.Version})
}

func (s *Service) handleUnwrap(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("key")
	var req UnwrapRequest
	if err := api.DecodeJSON(r, &req, false); err != nil {
		return err
	}
	ct, err := requiredB64("ciphertext", req.Ciphertext)
	if err != nil {
		return err
	}
	aad, err := decodeB64("aad", req.AAD)
	if err != nil {
		return err
	}
	if err := s.authorize(r, name, true); err != nil {
		return err
	}
	pt, v, err := s.Unwrap(r.Context(), name, ct, aad)
	if err != nil {
		return err
	}
	defer clear(pt)
	return api.WriteJSON(w, http.StatusOK, UnwrapResponse{Plaintext: base64.StdEncoding.EncodeToString(pt), KeyVersion: v.Version})
}

func (s *Service) handleRotate(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("key")
	var req RotateRequest
	if err := api.DecodeJSON(r, &req, true); err != nil {
		return err
	}
	expected := 0
	if req.ExpectedVersion != nil {
		expected = *req.ExpectedVersion
		if expected <= 0 {
			return api.Invalid(api.CodeInvalidField, "expected_version", "expected_version must be a positive version number")
		}
	}
	if err := s.authorize(r, name, true); err != nil {
		return err
	}
	if _, err := s.Rotate(r.Context(), name, expected); err != nil {
		if errors.Is(err, api.ErrGenerationMismatch) {
			return api.New(http.StatusConflict, api.CodeGenerationMismatch,
				"expected_version is not the active version; read the key and retry").Wrap(err)
		}
		return err
	}
	return s.writeKey(w, r, name, http.StatusOK)
}
