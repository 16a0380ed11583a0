package kmsplugin

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/kms/pkg/service"
)

// CheckEncryptResponse checks r against the limits kube-apiserver enforces
// on a KMS v2 Encrypt answer: a non-empty key_id and ciphertext of at most
// 1 KiB each, annotation keys that are fully qualified domain names, and at
// most 32 KiB of annotations in all.
func CheckEncryptResponse(r *service.EncryptResponse) error {
	if r == nil {
		return errors.New("nil encrypt response")
	}
	if err := CheckKeyID(r.KeyID); err != nil {
		return err
	}
	switch {
	case len(r.Ciphertext) == 0:
		return errors.New("empty ciphertext")
	case len(r.Ciphertext) > MaxCiphertextSize:
		return fmt.Errorf("ciphertext of %d bytes exceeds %d", len(r.Ciphertext), MaxCiphertextSize)
	}
	total := 0
	for k, v := range r.Annotations {
		if err := CheckAnnotationKey(k); err != nil {
			return err
		}
		total += len(k) + len(v)
	}
	if total > MaxAnnotationsSize {
		return fmt.Errorf("annotations of %d bytes exceed %d", total, MaxAnnotationsSize)
	}
	return nil
}

// CheckKeyID checks that id is a key_id kube-apiserver accepts: not empty,
// at most 1 KiB.
func CheckKeyID(id string) error {
	switch {
	case id == "":
		return errors.New("empty key_id")
	case len(id) > MaxKeyIDSize:
		return fmt.Errorf("key_id of %d bytes exceeds %d", len(id), MaxKeyIDSize)
	}
	return nil
}

// CheckAnnotationKey checks that k is a fully qualified domain name, as
// kube-apiserver requires of annotation keys: at least two dot-separated
// labels of lowercase letters, digits and inner hyphens, each at most 63
// characters, 253 in all.
func CheckAnnotationKey(k string) error {
	if len(k) == 0 || len(k) > 253 {
		return fmt.Errorf("annotation key %q: must be 1 to 253 characters", k)
	}
	labels := strings.Split(k, ".")
	if len(labels) < 2 {
		return fmt.Errorf("annotation key %q: must be a fully qualified domain name (at least two labels)", k)
	}
	for _, l := range labels {
		if !isDNSLabel(l) {
			return fmt.Errorf("annotation key %q: label %q is not a DNS-1123 label", k, l)
		}
	}
	return nil
}

func isDNSLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(l)-1:
		default:
			return false
		}
	}
	return true
}
