package barbicanref

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
)

const containerID = "0b9c1f3e-6f7a-4b1c-9a55-2b3c4d5e6f70"

// asAlice is a request context of user alice in project p1.
func asAlice() context.Context {
	return auth.WithPrincipal(context.Background(), auth.Principal{User: "alice", Project: "p1"})
}

func TestLoadActsAsTheCaller(t *testing.T) {
	tests := []struct {
		name        string
		callerToken bool
		token       string
		wantHeaders map[string]string // header → value; "" means absent
		wantErr     error
	}{
		{"noauth Barbican: the caller's project by header", false, "tok-1",
			map[string]string{"X-Project-Id": "p1", "X-Roles": "observer", "X-Auth-Token": ""}, nil},
		{"Keystone Barbican: the caller's own token, no project headers", true, "tok-1",
			map[string]string{"X-Auth-Token": "tok-1", "X-Project-Id": "", "X-Roles": ""}, nil},
		{"Keystone Barbican without a caller token is refused", true, "", nil, api.ErrForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got http.Header
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = r.Header.Clone()
				w.WriteHeader(http.StatusNotFound)
			}))
			t.Cleanup(srv.Close)
			l, err := New(Config{Endpoint: srv.URL, CallerToken: tt.callerToken})
			if err != nil {
				t.Fatal(err)
			}
			ctx := asAlice()
			if tt.token != "" {
				ctx = auth.WithToken(ctx, tt.token)
			}
			_, err = l.LoadContainer(ctx, containerID)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || got != nil {
					t.Fatalf("LoadContainer = %v (request sent: %v), want %v and no request", err, got != nil, tt.wantErr)
				}
				return
			}
			if err == nil || got == nil {
				t.Fatalf("LoadContainer of a missing container = %v (request sent: %v)", err, got != nil)
			}
			for h, want := range tt.wantHeaders {
				if v := got.Get(h); v != want {
					t.Errorf("%s = %q, want %q", h, v, want)
				}
			}
		})
	}
}

func TestOnlyRefsToTheConfiguredBarbicanAreFollowed(t *testing.T) {
	var sent bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent = true
		w.WriteHeader(http.StatusNotFound)
	}))
	t.Cleanup(srv.Close)
	l, err := New(Config{Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{
		"http://169.254.169.254/v1/containers/" + containerID,
		srv.URL + "/v1/orders/" + containerID,
		srv.URL + "/v1/containers/not-a-uuid",
		srv.URL + "/v1/containers/" + containerID + "?x=1",
		"not a ref",
	} {
		_, err := l.LoadContainer(asAlice(), ref)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Errorf("LoadContainer(%q) = %v, want a 400 api.Error", ref, err)
		}
	}
	if sent {
		t.Fatal("a refused ref reached Barbican")
	}
}

func TestNewRefusesABadEndpoint(t *testing.T) {
	for _, ep := range []string{"", "ftp://x", "127.0.0.1:9311", "http://"} {
		if _, err := New(Config{Endpoint: ep}); err == nil {
			t.Errorf("New(%q) accepted", ep)
		}
	}
}

func TestBarbicansAnswersMapToStableErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		want   error
	}{
		{"a missing container is not found", http.StatusNotFound, api.ErrNotFound},
		{"another project's container is forbidden", http.StatusForbidden, api.ErrForbidden},
		{"Barbican refusing the caller's token is forbidden", http.StatusUnauthorized, api.ErrForbidden},
		{"Barbican failing is unavailable", http.StatusServiceUnavailable, api.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
			}))
			t.Cleanup(srv.Close)
			l, err := New(Config{Endpoint: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := l.LoadContainer(asAlice(), containerID); !errors.Is(err, tt.want) {
				t.Fatalf("LoadContainer = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestACertificateContainerFillsTheInput(t *testing.T) {
	const (
		certID  = "11111111-1111-4111-8111-111111111111"
		keyID   = "22222222-2222-4222-8222-222222222222"
		certPEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	)
	keyDER := []byte{0x30, 0x82, 0x01, 0x00}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base := "http://" + r.Host + "/v1/secrets/"
		switch r.URL.Path {
		case "/v1/containers/" + containerID:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"type":"certificate","secret_refs":[` +
				`{"name":"certificate","secret_ref":"` + base + certID + `"},` +
				`{"name":"private_key","secret_ref":"` + base + keyID + `"},` +
				`{"name":"unrelated","secret_ref":"` + base + "33333333-3333-4333-8333-333333333333" + `"}]}`))
		case "/v1/secrets/" + certID:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"content_types":{"default":"text/plain"}}`))
		case "/v1/secrets/" + certID + "/payload":
			_, _ = w.Write([]byte(certPEM))
		case "/v1/secrets/" + keyID:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"content_types":{"default":"application/octet-stream"}}`))
		case "/v1/secrets/" + keyID + "/payload":
			_, _ = w.Write(keyDER)
		default:
			t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	l, err := New(Config{Endpoint: srv.URL + "/"})
	if err != nil {
		t.Fatal(err)
	}
	in, err := l.LoadContainer(asAlice(), srv.URL+"/v1/containers/"+containerID)
	if err != nil {
		t.Fatal(err)
	}
	if in.Certificate != certPEM {
		t.Errorf("Certificate = %q, want the PEM as stored", in.Certificate)
	}
	if want := base64.StdEncoding.EncodeToString(keyDER); in.PrivateKey != want {
		t.Errorf("PrivateKey = %q, want base64 DER %q", in.PrivateKey, want)
	}
	if strings.TrimSpace(in.Intermediates+in.Passphrase+in.PKCS12) != "" {
		t.Errorf("fields the container does not hold were set: %+v", in)
	}
}
