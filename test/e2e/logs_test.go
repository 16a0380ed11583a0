package e2e

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoSecretInTheLogs runs localrun at debug level through requests that
// carry every kind of secret the service handles — valid and invalid
// tokens, plaintexts to wrap, passphrases right and wrong, private keys —
// and checks that none of them, nor the master key, reaches its logs.
func TestNoSecretInTheLogs(t *testing.T) {
	s := startServer(t, serverOpts{args: []string{"--log-level", "debug"}, noLogDump: true})
	const wrongToken = "e2e-wrong-token-SECRET-4d1c9f"
	plaintext := "data-key-SECRET-1f2e3d4c5b6a7980"
	ptB64 := base64.StdEncoding.EncodeToString([]byte(plaintext))
	chain := newTLSChain(t)
	wrongPass := "wrong-passphrase-SECRET-77aa"
	keyDER, err := x509.MarshalPKCS8PrivateKey(chain.leafKey)
	if err != nil {
		t.Fatal(err)
	}
	plainKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))

	createCA(t, s, memberToken, "logs-1", nil)
	sign(t, s, memberToken, "logs-1", map[string]any{"csr": newCSR(t, p256(t), "alice", nil), "profile": "client"})
	do(t, "GET", s.URL+"/v1/clusters/logs-1/ca", wrongToken, nil)
	do(t, "GET", s.URL+"/v1/clusters/logs-1/ca", "", nil)
	do(t, "POST", s.URL+"/v1/keys", memberToken, map[string]any{"name": "logs-kek"})
	w := do(t, "POST", s.URL+"/v1/keys/logs-kek/wrap", memberToken, map[string]any{"plaintext": ptB64})
	var wrapped struct {
		Ciphertext string `json:"ciphertext"`
	}
	w.json(t, &wrapped)
	if r := do(t, "POST", s.URL+"/v1/keys/logs-kek/unwrap", memberToken, map[string]any{"ciphertext": wrapped.Ciphertext}); r.Status != 200 {
		t.Fatalf("unwrap: %d %s", r.Status, r.Body)
	}
	do(t, "POST", s.URL+"/v1/keys/logs-kek/unwrap", memberToken, map[string]any{"ciphertext": wrapped.Ciphertext, "aad": ptB64})
	for _, body := range []map[string]any{
		{"certificate": chain.leaf, "private_key": chain.encryptedKey, "passphrase": chain.passphrase, "intermediates": chain.inter},
		{"certificate": chain.leaf, "private_key": chain.encryptedKey, "passphrase": wrongPass},
		{"certificate": chain.leaf, "private_key": plainKey},
		{"certificate": chain.leaf, "private_key": plainKey, "passprase": wrongPass}, // unknown field
	} {
		do(t, "POST", s.URL+"/v1/tls/validate", memberToken, body)
	}

	// Stop localrun cleanly first: it writes its info and debug lines in
	// batches, so only after it exits is every line of these requests in.
	_ = s.cmd.Process.Signal(os.Interrupt)
	_ = s.cmd.Wait()
	logs := s.out.String()
	if !strings.Contains(logs, "logs-1") {
		t.Fatalf("debug logs (%d bytes) do not mention the requests, so this test proves nothing", len(logs))
	}
	master, err := os.ReadFile(filepath.Join(s.StateDir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"the member token":       memberToken,
		"a wrong token":          wrongToken,
		"a plaintext":            plaintext,
		"a plaintext in base64":  ptB64,
		"the right passphrase":   chain.passphrase,
		"a wrong passphrase":     wrongPass,
		"a private key (PEM)":    "PRIVATE KEY",
		"the master key (hex)":   hex.EncodeToString(master),
		"the master key (b64)":   base64.StdEncoding.EncodeToString(master),
		"an encrypted key's PEM": strings.SplitN(strings.TrimSpace(chain.encryptedKey), "\n", 3)[1],
	}
	for what, secret := range secrets {
		if strings.Contains(logs, secret) {
			t.Errorf("%s is in the logs", what)
		}
	}
}
