package keywrap_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
)

var (
	admin  = auth.Principal{User: "root", Project: "ops", Roles: []string{auth.RoleAdmin}}
	member = auth.Principal{User: "alice", Project: "p1", Roles: []string{auth.RoleMember}}
	reader = auth.Principal{User: "rita", Project: "p1", Roles: []string{auth.RoleReader}}
	other  = auth.Principal{User: "oscar", Project: "p2", Roles: []string{auth.RoleMember}}
)

// server serves the routes the way the gateway does: principal in the
// context, body limit, errors written as problem+json.
type server struct {
	t   *testing.T
	mux *http.ServeMux
}

func newServer(t *testing.T, s *keywrap.Service) *server {
	t.Helper()
	mux := http.NewServeMux()
	srv := &server{t: t, mux: mux}
	for _, rt := range keywrap.Routes(s) {
		limit := rt.MaxBody
		if limit == 0 {
			limit = api.DefaultMaxBody
		}
		h := rt.Handler
		mux.HandleFunc(rt.Pattern, func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
			if err := h(w, r); err != nil {
				api.WriteError(w, rt.Format, "test", err)
			}
		})
	}
	return srv
}

type reply struct {
	status int
	body   map[string]any
}

func (s *server) do(p auth.Principal, method, path, body string) reply {
	s.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req = req.WithContext(auth.WithPrincipal(req.Context(), p))
	rec := httptest.NewRecorder()
	s.mux.ServeHTTP(rec, req)
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		s.t.Fatalf("%s %s: response is not a JSON object: %q", method, path, rec.Body.String())
	}
	return reply{status: rec.Code, body: m}
}

func (r reply) want(t *testing.T, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %v", r.status, status, r.body)
	}
	if code != "" && r.body["code"] != code {
		t.Fatalf("code %v, want %s: %v", r.body["code"], code, r.body)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestRoutes(t *testing.T) {
	f := newFixture(t)
	srv := newServer(t, f.svc)

	t.Run("a member creates a key in its project and gets the contract's resource", func(t *testing.T) {
		r := srv.do(member, "POST", "/v1/keys", `{"name":"etcd"}`)
		r.want(t, http.StatusCreated, "")
		if r.body["name"] != "etcd" || r.body["project_id"] != "p1" || r.body["active_version"] != 1.0 || r.body["created_at"] == nil {
			t.Fatalf("resource %v", r.body)
		}
		vs, _ := r.body["versions"].([]any)
		if len(vs) != 1 {
			t.Fatalf("versions %v", r.body["versions"])
		}
		v := vs[0].(map[string]any)
		if v["version"] != 1.0 || len(v["key_id"].(string)) != 32 || v["created_at"] == nil || len(v) != 3 {
			t.Fatalf("version %v", v)
		}
		if len(r.body) != 5 {
			t.Fatalf("resource has fields beyond the contract: %v", r.body)
		}
	})
	t.Run("creating it again is 200 with the same key", func(t *testing.T) {
		srv.do(member, "POST", "/v1/keys", `{"name":"etcd","project_id":"p1"}`).want(t, http.StatusOK, "")
	})
	t.Run("the same name in another project conflicts", func(t *testing.T) {
		srv.do(other, "POST", "/v1/keys", `{"name":"etcd"}`).want(t, http.StatusConflict, api.CodeConflict)
	})
	t.Run("a member cannot create in another project", func(t *testing.T) {
		srv.do(member, "POST", "/v1/keys", `{"name":"x","project_id":"p2"}`).want(t, http.StatusForbidden, api.CodeForbidden)
	})
	t.Run("a reader cannot create", func(t *testing.T) {
		srv.do(reader, "POST", "/v1/keys", `{"name":"y"}`).want(t, http.StatusForbidden, api.CodeForbidden)
	})
	t.Run("an unknown field is refused", func(t *testing.T) {
		srv.do(member, "POST", "/v1/keys", `{"name":"z","algorithm":"aes"}`).want(t, http.StatusBadRequest, api.CodeUnknownField)
	})
	t.Run("a bad name is refused", func(t *testing.T) {
		srv.do(member, "POST", "/v1/keys", `{"name":"a/b"}`).want(t, http.StatusBadRequest, keywrap.CodeInvalidKeyName)
	})
	t.Run("a reader shows a key of its project", func(t *testing.T) {
		srv.do(reader, "GET", "/v1/keys/etcd", "").want(t, http.StatusOK, "")
	})
	t.Run("another project cannot show it", func(t *testing.T) {
		srv.do(other, "GET", "/v1/keys/etcd", "").want(t, http.StatusForbidden, api.CodeForbidden)
	})
	t.Run("a missing key is 404", func(t *testing.T) {
		srv.do(member, "GET", "/v1/keys/nope", "").want(t, http.StatusNotFound, api.CodeNotFound)
	})

	var ciphertext string
	t.Run("wrap returns a base64 ciphertext and the key version", func(t *testing.T) {
		r := srv.do(member, "POST", "/v1/keys/etcd/wrap", `{"plaintext":"`+b64("data key")+`","aad":"`+b64("ctx")+`"}`)
		r.want(t, http.StatusOK, "")
		ciphertext, _ = r.body["ciphertext"].(string)
		if r.body["key_version"] != 1.0 || ciphertext == "" || len(r.body) != 2 {
			t.Fatalf("wrap response %v", r.body)
		}
	})
	t.Run("unwrap returns the plaintext", func(t *testing.T) {
		r := srv.do(member, "POST", "/v1/keys/etcd/unwrap", `{"ciphertext":"`+ciphertext+`","aad":"`+b64("ctx")+`"}`)
		r.want(t, http.StatusOK, "")
		if r.body["plaintext"] != b64("data key") || r.body["key_version"] != 1.0 {
			t.Fatalf("unwrap response %v", r.body)
		}
	})
	t.Run("unwrap with another aad is decrypt_failed", func(t *testing.T) {
		srv.do(member, "POST", "/v1/keys/etcd/unwrap", `{"ciphertext":"`+ciphertext+`","aad":"`+b64("other")+`"}`).
			want(t, http.StatusBadRequest, keywrap.CodeDecryptFailed)
	})
	t.Run("a reader cannot wrap", func(t *testing.T) {
		srv.do(reader, "POST", "/v1/keys/etcd/wrap", `{"plaintext":"`+b64("k")+`"}`).want(t, http.StatusForbidden, api.CodeForbidden)
	})
	t.Run("another project cannot unwrap", func(t *testing.T) {
		srv.do(other, "POST", "/v1/keys/etcd/unwrap", `{"ciphertext":"`+ciphertext+`"}`).want(t, http.StatusForbidden, api.CodeForbidden)
	})
	t.Run("plaintext that is not base64 is an invalid field", func(t *testing.T) {
		srv.do(member, "POST", "/v1/keys/etcd/wrap", `{"plaintext":"not base64!"}`).want(t, http.StatusBadRequest, api.CodeInvalidField)
	})
	t.Run("a missing plaintext is an invalid field", func(t *testing.T) {
		srv.do(member, "POST", "/v1/keys/etcd/wrap", `{"aad":""}`).want(t, http.StatusBadRequest, api.CodeInvalidField)
	})
	t.Run("a plaintext over 64 KiB is plaintext_too_large", func(t *testing.T) {
		big := base64.StdEncoding.EncodeToString(make([]byte, keywrap.DefaultMaxPlaintext+1))
		srv.do(member, "POST", "/v1/keys/etcd/wrap", `{"plaintext":"`+big+`"}`).
			want(t, http.StatusRequestEntityTooLarge, keywrap.CodePlaintextTooLarge)
	})
	t.Run("a body over the route limit is body_too_large", func(t *testing.T) {
		big := base64.StdEncoding.EncodeToString(make([]byte, keywrap.MaxBody))
		srv.do(member, "POST", "/v1/keys/etcd/wrap", `{"plaintext":"`+big+`"}`).
			want(t, http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge)
	})
	t.Run("rotate with a stale expected_version is generation_mismatch", func(t *testing.T) {
		srv.do(member, "POST", "/v1/keys/etcd/rotate", `{"expected_version":2}`).want(t, http.StatusConflict, api.CodeGenerationMismatch)
	})
	t.Run("rotate returns the key with its new active version", func(t *testing.T) {
		r := srv.do(member, "POST", "/v1/keys/etcd/rotate", `{"expected_version":1}`)
		r.want(t, http.StatusOK, "")
		vs := r.body["versions"].([]any)
		if r.body["active_version"] != 2.0 || len(vs) != 2 || vs[0].(map[string]any)["version"] != 1.0 {
			t.Fatalf("rotate response %v", r.body)
		}
	})
	t.Run("rotate without a body rotates the active version", func(t *testing.T) {
		r := srv.do(admin, "POST", "/v1/keys/etcd/rotate", "")
		r.want(t, http.StatusOK, "")
		if r.body["active_version"] != 3.0 {
			t.Fatalf("rotate response %v", r.body)
		}
	})
	t.Run("the old ciphertext still unwraps after rotations", func(t *testing.T) {
		r := srv.do(member, "POST", "/v1/keys/etcd/unwrap", `{"ciphertext":"`+ciphertext+`","aad":"`+b64("ctx")+`"}`)
		r.want(t, http.StatusOK, "")
		if r.body["key_version"] != 1.0 {
			t.Fatalf("unwrap response %v", r.body)
		}
	})
	t.Run("a reader cannot rotate", func(t *testing.T) {
		srv.do(reader, "POST", "/v1/keys/etcd/rotate", "").want(t, http.StatusForbidden, api.CodeForbidden)
	})
}
