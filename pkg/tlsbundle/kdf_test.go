package tlsbundle

import (
	"encoding/asn1"
	"math"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/gateway"
)

// wantField checks that the first error names field.
func wantField(field string) func(*testing.T, *pki, Report) {
	return func(t *testing.T, _ *pki, r Report) {
		t.Helper()
		if len(r.Errors) == 0 || r.Errors[0].Field != field {
			t.Errorf("errors %+v, want the first on field %q", r.Errors, field)
		}
	}
}

func TestPBKDF2WorkCountsBlocksAndHashes(t *testing.T) {
	tests := []struct {
		name       string
		iterations int
		keyLen     int
		prf        asn1.ObjectIdentifier
		want       int
	}{
		{"OpenSSL's default: 2048 x SHA-256, AES-256", 2048, 32, oidHMACSHA256, 2048},
		{"OWASP 2023, exactly the budget", 600_000, 32, oidHMACSHA256, MaxKDFWork},
		{"SHA-1 (the default PRF) needs two blocks for AES-256", 10_000, 32, nil, 20_000},
		{"SHA-1 makes AES-128 in one block", 10_000, 16, oidHMACSHA1, 10_000},
		{"SHA-512 counts four", 10_000, 24, oidHMACSHA512, 40_000},
		{"an unknown PRF counts as the most expensive", 10_000, 32, asn1.ObjectIdentifier{1, 2, 3}, 40_000},
		{"huge counts saturate instead of overflowing", math.MaxInt64, math.MaxInt32, oidHMACSHA1, math.MaxInt32},
		{"negative counts are nothing", -5, 32, oidHMACSHA256, 0},
	}
	for _, tt := range tests {
		if got := pbkdf2Work(tt.iterations, tt.keyLen, tt.prf); got != tt.want {
			t.Errorf("%s: pbkdf2Work = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestPKCS12WorkOfOpenSSLBundles(t *testing.T) {
	p := corpus(t)
	tests := []struct {
		name string
		file string
		want int
	}{
		// OpenSSL 3: PBES2 PBKDF2-SHA256 AES-256 for key and certificates,
		// a SHA-256 MAC: 2048 + 2048 + 1024.
		{"OpenSSL 3 defaults", "bundle.p12", 5120},
		// 3DES PBE (1.5 each) for key and certificates, SHA-1 MAC (0.5).
		{"3DES and a SHA-1 MAC", "bundle.3des.p12", 3*1024 + 3*1024 + 1024},
		{"250,000 iterations", "bundle.250k.p12", 625_000},
	}
	for _, tt := range tests {
		der, ok := decodeBase64([]byte(p.openssl(t, tt.file)))
		if !ok {
			t.Fatalf("%s is not base64", tt.file)
		}
		got, err := pkcs12Work(der)
		if err != nil || got != tt.want {
			t.Errorf("%s: pkcs12Work = %d, %v; want %d", tt.name, got, err, tt.want)
		}
	}
}

func TestValidateRouteIsTheGatewaysTightlyLimitedRoute(t *testing.T) {
	if got := Routes(NewValidator(Options{}))[0].Name; got != gateway.ValidateRoute {
		t.Errorf("validate route is named %q; gateway.ValidateRoute is %q, so the tighter in-flight limit would not apply", got, gateway.ValidateRoute)
	}
}
