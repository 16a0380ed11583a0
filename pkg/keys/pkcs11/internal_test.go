package pkcs11

import (
	"errors"
	"fmt"
	"testing"

	p11 "github.com/miekg/pkcs11"
)

func TestSafelyTurnsPanicsIntoErrors(t *testing.T) {
	cause := fmt.Errorf("C_Encrypt: %w", p11.Error(p11.CKR_DEVICE_REMOVED))
	tests := []struct {
		name      string
		f         func() error
		wantPanic bool
		wantCode  p11.Error
	}{
		{"a returned error passes through", func() error { return p11.Error(p11.CKR_GENERAL_ERROR) }, false, p11.CKR_GENERAL_ERROR},
		{"a panic with an error value keeps its cause", func() error { panic(cause) }, true, p11.CKR_DEVICE_REMOVED},
		{"a panic with a string becomes an error", func() error { panic("boom") }, true, 0},
		{"success is nil", func() error { return nil }, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := safely(tt.f)
			var pe *panicError
			if got := errors.As(err, &pe); got != tt.wantPanic {
				t.Fatalf("panicError = %v, want %v (err %v)", got, tt.wantPanic, err)
			}
			var code p11.Error
			if got := errors.As(err, &code); got != (tt.wantCode != 0) || code != tt.wantCode {
				t.Fatalf("code of %v = %v, want %v", err, code, tt.wantCode)
			}
		})
	}
}

// TestDecryptOutcome: what C_Decrypt returned is classified by its PKCS#11
// return value, never by the text of an error.
func TestDecryptOutcome(t *testing.T) {
	tests := []struct {
		name          string
		err           error
		wantDecrypt   bool
		wantSure      bool
		wantUnchanged bool
	}{
		{"success is nil", nil, false, false, true},
		{"CKR_ENCRYPTED_DATA_INVALID is a bad ciphertext", p11.Error(p11.CKR_ENCRYPTED_DATA_INVALID), true, true, false},
		{"CKR_ENCRYPTED_DATA_LEN_RANGE is a bad ciphertext", p11.Error(p11.CKR_ENCRYPTED_DATA_LEN_RANGE), true, true, false},
		{"CKR_AEAD_DECRYPT_FAILED (PKCS#11 3.0) is a bad ciphertext", p11.Error(0x35), true, true, false},
		{"CKR_GENERAL_ERROR (SoftHSM2's failed tag) is one if the token is healthy", p11.Error(p11.CKR_GENERAL_ERROR), true, false, false},
		{"CKR_DEVICE_REMOVED is a fault", p11.Error(p11.CKR_DEVICE_REMOVED), false, false, true},
		{"CKR_SESSION_HANDLE_INVALID is a fault", p11.Error(p11.CKR_SESSION_HANDLE_INVALID), false, false, true},
		{"text that names C_Decrypt and a data error is not a return value", errors.New("C_Decrypt: pkcs11: 0x40: CKR_ENCRYPTED_DATA_INVALID"), false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decryptOutcome(tt.err)
			var de *decryptError
			if errors.As(got, &de) != tt.wantDecrypt {
				t.Fatalf("decryptOutcome(%v) = %v, decrypt error %v", tt.err, got, !tt.wantDecrypt)
			}
			if tt.wantDecrypt && de.sure != tt.wantSure {
				t.Fatalf("sure = %v, want %v", de.sure, tt.wantSure)
			}
			if tt.wantUnchanged && got != tt.err {
				t.Fatalf("decryptOutcome(%v) = %v, want it unchanged", tt.err, got)
			}
		})
	}
}
