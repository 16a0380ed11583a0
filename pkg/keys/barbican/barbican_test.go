package barbican

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

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

// slowBarbican stores a created secret only after the client has given up,
// as a Barbican that hung and then resumed does.
type slowBarbican struct {
	mu      sync.Mutex
	secrets map[string]string // id → name
	deleted int
	delay   time.Duration
}

func (f *slowBarbican) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == "POST" && r.URL.Path == "/v1/secrets":
		var body struct {
			Name string `json:"name"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		time.Sleep(f.delay) // the client times out meanwhile
		f.mu.Lock()
		id := fmt.Sprintf("00000000-0000-4000-8000-%012d", len(f.secrets)+f.deleted+1)
		f.secrets[id] = body.Name
		f.mu.Unlock()
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"secret_ref":"http://%s/v1/secrets/%s"}`, r.Host, id)
	case r.Method == "GET" && r.URL.Path == "/v1/secrets":
		name := r.URL.Query().Get("name")
		f.mu.Lock()
		var list []map[string]string
		for id, n := range f.secrets {
			if n == name {
				list = append(list, map[string]string{"name": n, "secret_ref": "http://" + r.Host + "/v1/secrets/" + id})
			}
		}
		f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"secrets": list, "total": len(list)})
	case r.Method == "DELETE":
		f.mu.Lock()
		id := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		if _, ok := f.secrets[id]; ok {
			delete(f.secrets, id)
			f.deleted++
		}
		f.mu.Unlock()
		w.WriteHeader(204)
	default:
		w.WriteHeader(404)
	}
}

func TestACreateWithoutAnAnswerLeavesNoSecret(t *testing.T) {
	fake := &slowBarbican{secrets: map[string]string{}, delay: 300 * time.Millisecond}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	c, err := Open(Config{Endpoint: srv.URL, Project: "p1", Timeout: 100 * time.Millisecond}, memBlobs{})
	if err != nil {
		t.Fatal(err)
	}
	c.reapStep, c.reapSettle, c.reapFor = 20*time.Millisecond, time.Second, 5*time.Second
	_, err = c.GenerateSigner(context.Background(), "ca/x/2/a", keys.ECDSAP256)
	if !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("GenerateSigner with Barbican answering too late = %v, want unavailable", err)
	}
	c.reaping.Wait()
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.secrets) != 0 || fake.deleted != 1 {
		t.Fatalf("Barbican holds %v after the reaper, deleted %d: want the late secret deleted", fake.secrets, fake.deleted)
	}
}
