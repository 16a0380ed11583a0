package tlsbundle

import (
	"context"
	"testing"
)

// BenchmarkValidate measures validations per second in process for a
// 3-level chain (root in ca_bundle, two intermediates, leaf) with an
// encrypted PKCS#8 key (OpenSSL's default PBES2: AES-256-CBC,
// PBKDF2-HMAC-SHA256, 2048 iterations), and the same bundle with a plain
// key to show what the key derivation costs.
func BenchmarkValidate(b *testing.B) {
	p := corpus(b)
	base := Input{
		Certificate: p.get(b, "leaf.pem"), Intermediates: certPEM(p.inter1, p.inter2),
		CABundle: p.get(b, "root.pem"), Hostname: "www.example.test",
	}
	for _, bc := range []struct {
		name, key, pass string
	}{
		{"encrypted-pkcs8", p.openssl(b, "key.p8.aes256-sha256.pem"), testPassphrase},
		{"plain-pkcs8", p.get(b, "leaf.key"), ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := base
			in.PrivateKey, in.Passphrase = bc.key, bc.pass
			if r := Validate(context.Background(), in, p.now); !r.Valid || len(r.Warnings) != 1 {
				b.Fatalf("benchmark bundle: valid %v errors %+v warnings %+v", r.Valid, r.Errors, r.Warnings)
			}
			b.ReportAllocs()
			for b.Loop() {
				Validate(context.Background(), in, p.now)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "validations/s")
		})
	}
}
