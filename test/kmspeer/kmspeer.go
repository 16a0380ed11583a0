// Package kmspeer is the minimal KMS v2 plugin the shim is measured against
// (test/kms and test/bench): the approach of the Kubernetes mock KMS plugin
// (k8s.io/kms internal/plugins/_mock), written from its description, not
// copied. One AES-GCM AEAD (in a PKCS#11 token or in memory), the nonce in
// front of the ciphertext, a fixed key_id, and a Status that answers "ok"
// without touching the key. It does none of what the shim adds: KEK
// versions, a key_id per version, a real health round trip, recovery from a
// custody fault, metrics. One gRPC call and one AES-GCM operation per
// Encrypt or Decrypt is the floor a KMS v2 plugin can reach.
package kmspeer

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	kmsservice "k8s.io/kms/pkg/service"
)

// Annotation is the annotation the plugin adds to every Encrypt answer, as
// the mock plugin does; Decrypt requires it back.
const Annotation = "version.encryption.remote.io"

// Plugin is the minimal KMS v2 service over one AEAD.
type Plugin struct {
	keyID string
	aead  cipher.AEAD
}

var _ kmsservice.Service = (*Plugin)(nil)

// New returns a Plugin sealing with aead (a 12-byte nonce AEAD, such as
// AES-GCM) under the fixed key_id keyID.
func New(keyID string, aead cipher.AEAD) *Plugin {
	return &Plugin{keyID: keyID, aead: aead}
}

// Encrypt seals plaintext with a random nonce, bound to the key_id.
func (m *Plugin) Encrypt(_ context.Context, _ string, plaintext []byte) (*kmsservice.EncryptResponse, error) {
	nonce := make([]byte, m.aead.NonceSize(), m.aead.NonceSize()+len(plaintext)+m.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return &kmsservice.EncryptResponse{
		Ciphertext:  m.aead.Seal(nonce, nonce, plaintext, []byte(m.keyID)),
		KeyID:       m.keyID,
		Annotations: map[string][]byte{Annotation: []byte("1")},
	}, nil
}

// Decrypt opens what Encrypt returned; another key_id or annotation, or a
// ciphertext that does not authenticate, is an error.
func (m *Plugin) Decrypt(_ context.Context, _ string, req *kmsservice.DecryptRequest) ([]byte, error) {
	if req.KeyID != m.keyID || string(req.Annotations[Annotation]) != "1" {
		return nil, errors.New("unknown key_id or annotation")
	}
	n := m.aead.NonceSize()
	if len(req.Ciphertext) < n {
		return nil, errors.New("ciphertext too short")
	}
	return m.aead.Open(nil, req.Ciphertext[:n], req.Ciphertext[n:], []byte(m.keyID))
}

// Status answers healthy with the fixed key_id, touching nothing.
func (m *Plugin) Status(context.Context) (*kmsservice.StatusResponse, error) {
	return &kmsservice.StatusResponse{Version: "v2", Healthz: "ok", KeyID: m.keyID}, nil
}

// Server is a Plugin served with k8s.io/kms's own gRPC service.
type Server struct {
	svc  *kmsservice.GRPCService
	done chan error
}

// Serve serves p on the unix socket sock (a path) and returns once the
// socket exists (at most 5 s).
func Serve(sock string, p *Plugin) (*Server, error) {
	s := &Server{svc: kmsservice.NewGRPCService(sock, 5*time.Second, p), done: make(chan error, 1)}
	go func() { s.done <- s.svc.ListenAndServe() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if fi, err := os.Stat(sock); err == nil && fi.Mode().Type() == fs.ModeSocket {
			return s, nil
		}
		select {
		case err := <-s.done:
			return nil, fmt.Errorf("kms peer on %s: %w", sock, err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Close()
			return nil, fmt.Errorf("kms peer: no socket %s after 5s", sock)
		}
	}
}

// Close stops the server and waits for it.
func (s *Server) Close() {
	s.svc.Shutdown()
	<-s.done
}
