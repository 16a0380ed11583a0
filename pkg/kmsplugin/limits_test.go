package kmsplugin_test

import (
	"strings"
	"testing"

	"k8s.io/kms/pkg/service"

	"github.com/clusterkeys/clusterkeys/pkg/kmsplugin"
)

func TestCheckAnnotationKey(t *testing.T) {
	tests := []struct {
		name, key string
		ok        bool
	}{
		{"a fully qualified domain name", "version.kms.clusterkeys.io", true},
		{"two labels with digits and inner hyphens", "a-1.b2", true},
		{"a single label", "version", false},
		{"a key with a slash, as in object annotations", "clusterkeys.io/version", false},
		{"upper case", "Version.clusterkeys.io", false},
		{"an empty label", "a..b", false},
		{"a leading hyphen", "-a.b", false},
		{"a trailing hyphen", "a-.b", false},
		{"a label over 63 characters", strings.Repeat("a", 64) + ".io", false},
		{"a name over 253 characters", strings.Repeat(strings.Repeat("a", 60)+".", 5) + "io", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := kmsplugin.CheckAnnotationKey(tt.key); (err == nil) != tt.ok {
				t.Fatalf("CheckAnnotationKey(%q) = %v, want ok=%v", tt.key, err, tt.ok)
			}
		})
	}
}

func TestCheckEncryptResponse(t *testing.T) {
	ct := make([]byte, 64)
	tests := []struct {
		name string
		r    *service.EncryptResponse
		ok   bool
	}{
		{"within every limit", &service.EncryptResponse{Ciphertext: ct, KeyID: "ck1:abc", Annotations: map[string][]byte{"kek.kms.clusterkeys.io": []byte("x")}}, true},
		{"a ciphertext of exactly 1 KiB", &service.EncryptResponse{Ciphertext: make([]byte, 1024), KeyID: "k"}, true},
		{"a ciphertext over 1 KiB", &service.EncryptResponse{Ciphertext: make([]byte, 1025), KeyID: "k"}, false},
		{"a key_id over 1 KiB", &service.EncryptResponse{Ciphertext: ct, KeyID: strings.Repeat("k", 1025)}, false},
		{"an empty key_id", &service.EncryptResponse{Ciphertext: ct}, false},
		{"an empty ciphertext", &service.EncryptResponse{KeyID: "k"}, false},
		{"an annotation key that is no FQDN", &service.EncryptResponse{Ciphertext: ct, KeyID: "k", Annotations: map[string][]byte{"kek": nil}}, false},
		{"annotations over 32 KiB", &service.EncryptResponse{Ciphertext: ct, KeyID: "k", Annotations: map[string][]byte{"a.io": make([]byte, 32*1024)}}, false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := kmsplugin.CheckEncryptResponse(tt.r); (err == nil) != tt.ok {
				t.Fatalf("CheckEncryptResponse = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
