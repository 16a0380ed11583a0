package ca

import (
	"testing"
)

// BenchmarkSign measures one sign in process, fakes for store and custody:
// CSR parsing and signature check, policy, certificate creation and the
// registry write. The CSR is P-256; the CA key varies.
func BenchmarkSign(b *testing.B) {
	for _, alg := range []string{"ecdsa-p256", "rsa-2048"} {
		b.Run("ca="+alg, func(b *testing.B) {
			f := newFixture(b, Options{})
			f.mustCreate(b, "c1", CreateRequest{KeyAlgorithm: alg})
			req := SignRequest{CSR: makeCSR(b, csrOptions{cn: "alice", orgs: []string{"dev"}}), Profile: "client"}
			ctx := as(member)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.a.Sign(ctx, "c1", req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseCSR measures parsing and checking a CSR alone.
func BenchmarkParseCSR(b *testing.B) {
	for name, o := range map[string]csrOptions{
		"p256":     {cn: "bench"},
		"rsa-2048": {key: rsaKey(2048), cn: "bench"},
	} {
		b.Run(name, func(b *testing.B) {
			data := []byte(makeCSR(b, o))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseCSR(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
