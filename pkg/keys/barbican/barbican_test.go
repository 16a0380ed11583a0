package barbican

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/keys"
)

// memBlobs is an in-memory BlobStore for this package's own logic; the
// real Barbican and SQLite are exercised by test/barbican.
type memBlobs map[string][]byte

func (m memBlobs) PutBlob(_ context.Context, ref string, b []byte) error {
	if _, ok := m[ref]; ok {
		return api.ErrConflict
	}
	m[ref] = b
	return nil
}

func (m memBlobs) GetBlob(_ context.Context, ref string) ([]byte, error) {
	b, ok := m[ref]
	if !ok {
		return nil, api.ErrNotFound
	}
	return b, nil
}

func (m memBlobs) DeleteBlob(_ context.Context, ref string) error { delete(m, ref); return nil }

func TestErrorsMapToStableCodes(t *testing.T) {
	tests := []struct {
		name   string
		status int
		want   error
	}{
		{"Barbican refusing our token is a backend error", 401, api.ErrBackend},
		{"Barbican forbidding the project is a backend error", 403, api.ErrBackend},
		{"a missing secret is not found", 404, api.ErrNotFound},
		{"Barbican failing is unavailable", 503, api.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
			}))
			t.Cleanup(srv.Close)
			c, err := Open(Config{Endpoint: srv.URL, Project: "p1"}, memBlobs{})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Check(context.Background()); !errors.Is(err, tt.want) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
			_, err = c.GenerateSigner(context.Background(), "ca/x/1/a", keys.ECDSAP256)
			if !errors.Is(err, tt.want) {
				t.Fatalf("GenerateSigner = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("an unreachable Barbican is unavailable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c, err := Open(Config{Endpoint: "http://" + addr, Project: "p1"}, memBlobs{})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Check(context.Background()); !errors.Is(err, api.ErrUnavailable) {
			t.Fatalf("Check = %v", err)
		}
	})
}

func TestOpenRefusesBadConfig(t *testing.T) {
	for _, cfg := range []Config{{}, {Endpoint: "ftp://x"}, {Endpoint: "http://127.0.0.1:1"}} {
		if _, err := Open(cfg, memBlobs{}); err == nil {
			t.Errorf("Open(%+v) accepted", cfg)
		}
	}
}

func TestARecordFailureDeletesTheNewSecret(t *testing.T) {
	var deleted bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case "POST":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(201)
			_, _ = w.Write([]byte(`{"secret_ref":"http://` + r.Host + `/v1/secrets/0b9c"}`))
		case "DELETE":
			deleted = r.URL.Path == "/v1/secrets/0b9c"
			w.WriteHeader(204)
		}
	}))
	t.Cleanup(srv.Close)
	blobs := memBlobs{"barbican/ca/x/1/a": []byte("taken")} // the record cannot be written
	c, err := Open(Config{Endpoint: srv.URL, Project: "p1"}, blobs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenerateSigner(context.Background(), "ca/x/1/a", keys.ECDSAP256); err == nil {
		t.Fatal("GenerateSigner succeeded without its record")
	}
	if !deleted {
		t.Fatal("the orphaned secret was not deleted")
	}
}
