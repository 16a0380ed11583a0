package pkcs11

import (
	"errors"
	"fmt"
	"testing"

	p11 "github.com/miekg/pkcs11"
)

func TestSafelyTurnsPanicsIntoErrors(t *testing.T) {
	cause := fmt.Errorf("C_Encrypt: %v", p11.Error(p11.CKR_DEVICE_REMOVED))
	tests := []struct {
		name      string
		f         func() error
		wantPanic bool
		wantCKR   string
	}{
		{"a returned error passes through", func() error { return p11.Error(p11.CKR_GENERAL_ERROR) }, false, "CKR_GENERAL_ERROR"},
		{"crypto11's GCM Seal panic (an error value) keeps its cause", func() error { panic(cause) }, true, "CKR_DEVICE_REMOVED"},
		{"a panic with a string becomes an error", func() error { panic("boom") }, true, ""},
		{"success is nil", func() error { return nil }, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := safely(tt.f)
			var pe *panicError
			if got := errors.As(err, &pe); got != tt.wantPanic {
				t.Fatalf("panicError = %v, want %v (err %v)", got, tt.wantPanic, err)
			}
			if err != nil && ckr(err) != tt.wantCKR {
				t.Fatalf("ckr(%v) = %q, want %q", err, ckr(err), tt.wantCKR)
			}
		})
	}
}

func TestCKRNames(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"a pkcs11.Error", p11.Error(p11.CKR_OBJECT_HANDLE_INVALID), "CKR_OBJECT_HANDLE_INVALID"},
		{"a wrapped pkcs11.Error", fmt.Errorf("sign: %w", p11.Error(p11.CKR_SESSION_HANDLE_INVALID)), "CKR_SESSION_HANDLE_INVALID"},
		{"an error flattened to text by crypto11", errors.New("C_DecryptInit: pkcs11: 0x190: CKR_CRYPTOKI_NOT_INITIALIZED"), "CKR_CRYPTOKI_NOT_INITIALIZED"},
		{"an error without a CKR name", errors.New("could not find PKCS#11 token"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ckr(tt.err); got != tt.want {
				t.Fatalf("ckr = %q, want %q", got, tt.want)
			}
		})
	}
}
