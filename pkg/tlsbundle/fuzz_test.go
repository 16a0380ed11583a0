package tlsbundle

import (
	"context"
	"encoding/base64"
	"os"
	"strings"
	"testing"
)

// fuzzPassphrase is the passphrase every fuzz input is tried with; no
// error message may contain it.
const fuzzPassphrase = "fuzz-Passphrase-7"

// seedFiles adds the fixtures named to f, skipping openssl-made ones that
// are missing (Go-made seeds are always there).
func seedFiles(f *testing.F, decode bool, names ...string) {
	f.Helper()
	p := fuzzCorpus(f)
	for _, n := range names {
		s, ok := p.files[n]
		if !ok {
			if os.Getenv("CI") == "true" && p.opensslErr != nil {
				f.Fatalf("fixture %s missing: %v", n, p.opensslErr)
			}
			continue
		}
		if decode {
			if b, ok := decodeBase64([]byte(s)); ok {
				f.Add(b)
				continue
			}
		}
		f.Add([]byte(s))
	}
}

// fuzzCorpus is corpus without the RSA fixtures when it is built for a
// fuzz worker (the seeds that need them are then skipped); under plain go
// test the tests have built the full corpus already.
func fuzzCorpus(f *testing.F) *pki {
	f.Helper()
	fixtureLight = true
	return corpus(f)
}

func FuzzParsePrivateKey(f *testing.F) {
	seedFiles(f, false, "leaf.key", "leaf.sec1", "leafRSA.pkcs1", "leaf.key.b64", "key.p8.aes256-sha256.pem",
		"key.p8.aes128-sha1.pem", "key.p8.des3.pem", "key.p8.scrypt.pem", "key.p8.pbes1.pem", "key.legacy.pem",
		"key.p8.slow-pbkdf2.pem", "key.p8.slow-scrypt.pem", "key.p8.aes256.der")
	f.Add([]byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, pass := range []string{"", fuzzPassphrase} {
			k, err := ParsePrivateKey(data, pass)
			if err == nil {
				if publicKey(k) == nil {
					t.Fatalf("key of type %T has no public key", k)
				}
				continue
			}
			if KeyErrorCode(err) == "" {
				t.Fatalf("error without a code: %v", err)
			}
			if strings.Contains(err.Error(), fuzzPassphrase) {
				t.Fatalf("error shows the passphrase: %v", err)
			}
		}
	})
}

func FuzzParseCertificates(f *testing.F) {
	seedFiles(f, false, "leaf.pem", "chain", "inters.p7b.pem", "inters.p7b.der", "leaf.der.b64")
	f.Add([]byte("junk\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, _ := ParseCertificates(data, MaxIntermediates)
		if len(certs) > MaxIntermediates {
			t.Fatalf("%d certificates returned, limit %d", len(certs), MaxIntermediates)
		}
	})
}

func FuzzParsePKCS7(f *testing.F) {
	seedFiles(f, true, "inters.p7b.der")
	f.Add([]byte{0x30, 0x03, 0x06, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		certs, err := ParsePKCS7(der)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificates")
		}
	})
}

func FuzzParsePKCS12(f *testing.F) {
	seedFiles(f, true, "bundle.p12", "bundle.nopass.p12", "bundle.3des.p12", "bundle.slow.p12")
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		for _, pass := range []string{"", fuzzPassphrase} {
			key, leaf, _, err := ParsePKCS12(der, pass)
			if err == nil {
				if key == nil || leaf == nil {
					t.Fatal("no error but no key or leaf")
				}
				continue
			}
			if KeyErrorCode(err) == "" || strings.Contains(err.Error(), fuzzPassphrase) {
				t.Fatalf("bad error: %v", err)
			}
		}
	})
}

func FuzzValidate(f *testing.F) {
	p := fuzzCorpus(f)
	f.Add(p.files["leaf.pem"], p.files["leaf.key"], p.files["chain"], "", "", "www.example.test", p.files["root.pem"])
	f.Add(p.files["leafB.pem"], p.files["leafB.key"], p.files["interB.pem"]+p.files["rootB.pem"], "", "", "", p.files["root.pem"])
	if s, ok := p.files["bundle.p12"]; ok {
		f.Add("", "", "", testPassphrase, s, "", "")
	}
	f.Add("x", "y", "z", "p", base64.StdEncoding.EncodeToString([]byte{0x30, 0x00}), "*.", "-----BEGIN CERTIFICATE-----")
	f.Fuzz(func(t *testing.T, cert, key, inters, pass, pfx, host, roots string) {
		in := Input{Certificate: cert, PrivateKey: key, Intermediates: inters, Passphrase: pass, PKCS12: pfx, Hostname: host, CABundle: roots}
		r := Validate(context.Background(), in, p.now)
		if r.Valid != (len(r.Errors) == 0) || r.Errors == nil || r.Warnings == nil || r.Chain == nil {
			t.Fatalf("inconsistent report: valid %v errors %+v warnings %+v chain %d", r.Valid, r.Errors, r.Warnings, len(r.Chain))
		}
		for _, is := range append(r.Errors, r.Warnings...) {
			if is.Code == "" || is.Message == "" {
				t.Fatalf("issue without code or message: %+v", is)
			}
			if len(pass) >= 4 && strings.Contains(is.Message, pass) && !strings.Contains(cert+key+inters+host+roots+pfx, pass) {
				t.Fatalf("message shows the passphrase: %+v", is)
			}
		}
		if r.Valid && r.ChainPEM == "" {
			t.Fatal("valid without chain_pem")
		}
	})
}
