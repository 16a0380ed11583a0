package software

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
)

func TestMasterKeyFromEnv(t *testing.T) {
	key := make([]byte, MasterKeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	short := base64.StdEncoding.EncodeToString(key[:16])
	bad := "!!" + base64.StdEncoding.EncodeToString(key)[2:]
	tests := []struct {
		name    string
		env     map[string]string
		wantOK  bool
		wantKey []byte
		wantErr string
	}{
		{"unset: no key and no error", nil, false, nil, ""},
		{"standard base64 gives the key", map[string]string{EnvMasterKey: base64.StdEncoding.EncodeToString(key)}, true, key, ""},
		{"unpadded base64 and a trailing newline are fine", map[string]string{EnvMasterKey: base64.RawStdEncoding.EncodeToString(key) + "\n"}, true, key, ""},
		{"a key of the wrong length is refused", map[string]string{EnvMasterKey: short}, true, nil, "16 bytes once decoded, want exactly 32"},
		{"text that is not base64 is refused", map[string]string{EnvMasterKey: bad}, true, nil, "not base64"},
		{"an empty value is refused", map[string]string{EnvMasterKey: ""}, true, nil, "0 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			got, ok, err := MasterKeyFromEnv(lookup)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if v := tt.env[EnvMasterKey]; len(v) > 4 && strings.Contains(err.Error(), strings.TrimSpace(v)[4:]) {
					t.Fatalf("the error shows the value: %v", err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.wantKey) {
				t.Fatalf("MasterKeyFromEnv = %x, %v", got, err)
			}
		})
	}
}
