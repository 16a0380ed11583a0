package tlsbundle

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/gateway"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
	"github.com/clusterkeys/clusterkeys/pkg/metrics/metricstest"
)

// newTestServer serves routes through the real gateway (authentication,
// body limits, strict errors as problem+json) as a reader of project p1.
func newTestServer(t *testing.T, routes []api.Route) *httptest.Server {
	t.Helper()
	return newTestServerAs(t, routes, auth.Principal{User: "tester", Project: "p1", Roles: []string{auth.RoleReader}})
}

// newTestServerAs is newTestServer with the caller p.
func newTestServerAs(t *testing.T, routes []api.Route, p auth.Principal) *httptest.Server {
	t.Helper()
	g, err := gateway.New(gateway.Config{Auth: fixedAuth{p}, Registry: metrics.NewRegistry()}, routes...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return srv
}

// fixedAuth authenticates testToken as one principal.
type fixedAuth struct{ p auth.Principal }

const testToken = "tlsbundle-test-token"

func (a fixedAuth) Authenticate(_ context.Context, token string) (auth.Principal, error) {
	if token != testToken {
		return auth.Principal{}, api.ErrUnauthenticated
	}
	return a.p, nil
}

// post sends body to POST /v1/tls/validate and returns the status and body.
func post(t *testing.T, srv *httptest.Server, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", srv.URL+"/v1/tls/validate", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, buf.Bytes()
}

func validateHTTP(t *testing.T, srv *httptest.Server, in Input) (int, Report) {
	t.Helper()
	body, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	status, out := post(t, srv, body)
	var rep Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("response is not a report (%d): %v: %s", status, err, out)
	}
	return status, rep
}

type validateCase struct {
	name      string
	in        func(t *testing.T, p *pki) Input
	wantErrs  []string
	wantWarns []string
	check     func(t *testing.T, p *pki, r Report)
}

// eachCaseInput runs f in a subtest for the input of every validateCase,
// as given and again with the root added to its ca_bundle.
func eachCaseInput(t *testing.T, p *pki, f func(t *testing.T, in Input)) {
	t.Helper()
	for _, tc := range validateCases() {
		for _, withRoot := range []bool{false, true} {
			name := tc.name
			if withRoot {
				name += " (root in ca_bundle)"
			}
			t.Run(name, func(t *testing.T) {
				in := tc.in(t, p)
				if withRoot {
					in.CABundle += p.get(t, "root.pem")
				}
				f(t, in)
			})
		}
	}
}

// good is the leaf bundle with its intermediates in order.
func good(t *testing.T, p *pki) Input {
	return Input{Certificate: p.get(t, "leaf.pem"), PrivateKey: p.get(t, "leaf.key"), Intermediates: p.get(t, "chain")}
}

func withKey(t *testing.T, p *pki, name string, pass string) Input {
	in := good(t, p)
	in.PrivateKey, in.Passphrase = p.openssl(t, name), pass
	return in
}

// goodWith is the good input changed by edit.
func goodWith(edit func(t *testing.T, p *pki, in *Input)) func(*testing.T, *pki) Input {
	return func(t *testing.T, p *pki) Input {
		in := good(t, p)
		edit(t, p, &in)
		return in
	}
}

func leafOf(t *testing.T, p *pki, leaf string) Input {
	in := good(t, p)
	in.Certificate, in.PrivateKey = p.get(t, leaf+".pem"), p.get(t, leaf+".key")
	return in
}

func p12(t *testing.T, p *pki, name, pass string) Input {
	return Input{PKCS12: p.openssl(t, name), Passphrase: pass}
}

func validateCases() []validateCase {
	none := []string{}
	chainIsOrdered := func(t *testing.T, p *pki, r Report) {
		t.Helper()
		want := []string{fingerprint(p.leaf), fingerprint(p.inter2), fingerprint(p.inter1)}
		var got []string
		for _, c := range r.Chain {
			got = append(got, c.FingerprintSHA256)
		}
		if !slices.Equal(got[:min(3, len(got))], want) {
			t.Errorf("chain = %v, want leaf, inter2, inter1", r.Chain)
		}
		if r.ChainPEM != certPEM(p.leaf, p.inter2, p.inter1) {
			t.Errorf("chain_pem is not leaf+inter2+inter1:\n%s", r.ChainPEM)
		}
	}
	return []validateCase{
		// Good bundles in every input form.
		{name: "a PEM leaf with a PKCS#8 key and ordered PEM intermediates is valid", in: good, wantErrs: none, wantWarns: none,
			check: func(t *testing.T, p *pki, r Report) {
				chainIsOrdered(t, p, r)
				if r.Certificate == nil || r.Certificate.Subject != p.leaf.Subject.String() || r.Certificate.KeyAlgorithm != "ecdsa-p256" ||
					r.Certificate.FingerprintSHA256 != fingerprint(p.leaf) || !slices.Equal(r.Certificate.DNSNames, p.leaf.DNSNames) {
					t.Errorf("certificate = %+v", r.Certificate)
				}
				if r.HostNames == nil || r.HostNames.CN != "www.example.test" || !slices.Equal(r.HostNames.DNSNames, []string{"www.example.test", "example.test"}) {
					t.Errorf("host_names = %+v", r.HostNames)
				}
			}},
		{name: "base64 DER certificate and key are valid", wantErrs: none, wantWarns: none, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.Certificate, in.PrivateKey = p.get(t, "leaf.der.b64"), p.get(t, "leaf.key.b64")
		})},
		{name: "an RSA leaf with a PKCS#1 key is valid", wantErrs: none, wantWarns: none, in: func(t *testing.T, p *pki) Input {
			in := leafOf(t, p, "leafRSA")
			in.PrivateKey = p.get(t, "leafRSA.pkcs1")
			return in
		}, check: func(t *testing.T, _ *pki, r Report) {
			if r.Certificate.KeyAlgorithm != "rsa-2048" {
				t.Errorf("key_algorithm = %q", r.Certificate.KeyAlgorithm)
			}
		}},
		{name: "a SEC1 EC key is valid", wantErrs: none, wantWarns: none, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.PrivateKey = p.get(t, "leaf.sec1")
		})},
		{name: "intermediates with CRLF, text and blank lines between blocks are valid", wantErrs: none, wantWarns: none, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.Intermediates = "subject=A2\r\n\r\n" + strings.ReplaceAll(certPEM(p.inter2), "\n", "\r\n") + "\n  \n# next\n" + certPEM(p.inter1) + "\n\n"
		}), check: chainIsOrdered},
		{name: "the leaf and an intermediate repeated among the intermediates are ignored", wantErrs: none, wantWarns: none, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.Intermediates = certPEM(p.leaf, p.inter2, p.inter2, p.inter1)
		}), check: chainIsOrdered},
		{name: "a certificate field holding the whole chain is valid", wantErrs: none, wantWarns: none, in: func(t *testing.T, p *pki) Input {
			return Input{Certificate: certPEM(p.leaf, p.inter2, p.inter1), PrivateKey: p.get(t, "leaf.key")}
		}, check: chainIsOrdered},
		{name: "encrypted PKCS#8 AES-256/PBKDF2-SHA256 is valid", wantErrs: none, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return withKey(t, p, "key.p8.aes256-sha256.pem", testPassphrase) }},
		{name: "encrypted PKCS#8 AES-128/PBKDF2-SHA1 is valid", wantErrs: none, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return withKey(t, p, "key.p8.aes128-sha1.pem", testPassphrase) }},
		{name: "encrypted PKCS#8 AES-192/PBKDF2-SHA512 is valid", wantErrs: none, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return withKey(t, p, "key.p8.aes192-sha512.pem", testPassphrase) }},
		{name: "encrypted PKCS#8 3DES is valid", wantErrs: none, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return withKey(t, p, "key.p8.des3.pem", testPassphrase) }},
		{name: "encrypted PKCS#8 with scrypt is valid", wantErrs: none, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return withKey(t, p, "key.p8.scrypt.pem", testPassphrase) }},
		{name: "encrypted PKCS#8 as base64 DER is valid", wantErrs: none, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return withKey(t, p, "key.p8.aes256.der", testPassphrase) }},
		{name: "a legacy encrypted PEM key is read with a warning", wantErrs: none, wantWarns: []string{CodeLegacyKeyEncryption},
			in: func(t *testing.T, p *pki) Input { return withKey(t, p, "key.legacy.pem", testPassphrase) }},
		{name: "PKCS#7 PEM intermediates are valid", wantErrs: none, wantWarns: none, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.Intermediates = p.openssl(t, "inters.p7b.pem")
		}), check: chainIsOrdered},
		{name: "PKCS#7 DER intermediates are valid", wantErrs: none, wantWarns: none, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.Intermediates = p.openssl(t, "inters.p7b.der")
		}), check: chainIsOrdered},
		{name: "a PKCS#12 bundle with a passphrase is valid", wantErrs: none, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return p12(t, p, "bundle.p12", testPassphrase) }, check: chainIsOrdered},
		{name: "a PKCS#12 bundle without a passphrase is valid", wantErrs: none, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return p12(t, p, "bundle.nopass.p12", "") }},
		{name: "a 3DES/SHA-1 PKCS#12 bundle is valid", wantErrs: none, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return p12(t, p, "bundle.3des.p12", testPassphrase) }},
		{name: "a chain to a root in ca_bundle is valid and ends at the trusted root", wantErrs: none, wantWarns: none, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.CABundle = p.get(t, "unrelated.pem") + p.get(t, "root.pem")
			in.Hostname = "example.test"
		}), check: func(t *testing.T, p *pki, r Report) {
			chainIsOrdered(t, p, r)
			if len(r.Chain) != 4 || !r.Chain[3].Trusted || r.Chain[3].FingerprintSHA256 != fingerprint(p.root) {
				t.Errorf("chain does not end at the trusted root: %+v", r.Chain)
			}
		}},

		{name: "a self-signed server certificate pinned in ca_bundle is valid and served", wantErrs: none, wantWarns: none, in: func(t *testing.T, p *pki) Input {
			in := leafOf(t, p, "selfSigned")
			in.Intermediates, in.CABundle = "", p.get(t, "selfSigned.pem")
			return in
		}, check: func(t *testing.T, p *pki, r Report) {
			if r.ChainPEM != p.get(t, "selfSigned.pem") || len(r.Chain) != 1 || !r.Chain[0].Trusted {
				t.Errorf("chain %+v chain_pem %q", r.Chain, r.ChainPEM)
			}
		}},

		// One bundle per error.
		{name: "input over 1 MiB is refused", wantErrs: []string{CodeInputTooLarge}, wantWarns: none, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.Intermediates = strings.Repeat("x", MaxInputBytes)
		})},
		{name: "pkcs12 together with a certificate conflicts", wantErrs: []string{CodeConflictingInputs}, wantWarns: none, in: func(t *testing.T, p *pki) Input {
			in := p12(t, p, "bundle.p12", testPassphrase)
			in.Certificate = p.get(t, "leaf.pem")
			return in
		}},
		{name: "container_ref without a loader is unsupported", wantErrs: []string{CodeContainerRefUnsupported}, wantWarns: none,
			in: func(t *testing.T, p *pki) Input {
				return Input{ContainerRef: "https://barbican.example.test/v1/containers/1"}
			}},
		{name: "no certificate at all", wantErrs: []string{CodeCertificateMissing}, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return Input{PrivateKey: p.get(t, "leaf.key")} }},
		{name: "an unreadable certificate", wantErrs: []string{CodeCertificateUnreadable}, wantWarns: none, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.Certificate = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
		})},
		{name: "a certificate with a 64 kbit RSA key is refused before any signature check", wantErrs: []string{CodeCertificateUnreadable}, wantWarns: none,
			in: goodWith(func(t *testing.T, p *pki, in *Input) {
				in.Certificate = p.get(t, "leafHugeRSA.pem")
			})},
		{name: "an intermediate with a 64 kbit RSA key is refused", wantErrs: []string{CodeIntermediateUnreadable}, wantWarns: none,
			in: goodWith(func(t *testing.T, p *pki, in *Input) {
				in.Intermediates += p.get(t, "leafHugeRSA.pem")
			})},
		{name: "no private key", wantErrs: []string{CodeKeyMissing}, wantWarns: none, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.PrivateKey = ""
		})},
		{name: "an unreadable private key", wantErrs: []string{CodeKeyUnreadable}, wantWarns: none, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.PrivateKey = "not a key at all!"
		})},
		{name: "an encrypted PKCS#8 key without a passphrase", wantErrs: []string{CodeNeedsPassphrase}, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return withKey(t, p, "key.p8.aes256-sha256.pem", "") }},
		{name: "an encrypted PKCS#8 key with a wrong passphrase", wantErrs: []string{CodeBadPassphrase}, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return withKey(t, p, "key.p8.aes256-sha256.pem", "wrong") },
			check: func(t *testing.T, _ *pki, r Report) {
				if r.Errors[0].Field != FieldPassphrase {
					t.Errorf("bad_passphrase field = %q, want passphrase", r.Errors[0].Field)
				}
			}},
		{name: "a legacy PEM key without a passphrase", wantErrs: []string{CodeNeedsPassphrase}, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return withKey(t, p, "key.legacy.pem", "") }},
		{name: "a legacy PEM key with a wrong passphrase", wantErrs: []string{CodeBadPassphrase}, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return withKey(t, p, "key.legacy.pem", "wrong") }},
		{name: "a PBES1-encrypted key is unsupported", wantErrs: []string{CodeUnsupportedKeyEncryption}, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return withKey(t, p, "key.p8.pbes1.pem", testPassphrase) }},
		{name: "a PBKDF2 work factor of 50 M iterations is refused", wantErrs: []string{CodeWorkFactorTooHigh}, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return withKey(t, p, "key.p8.slow-pbkdf2.pem", testPassphrase) }},
		{name: "an scrypt work factor of N=2^20 is refused", wantErrs: []string{CodeWorkFactorTooHigh}, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return withKey(t, p, "key.p8.slow-scrypt.pem", testPassphrase) }},
		{name: "a PKCS#12 bundle with 3 x 400,000 iterations is refused", wantErrs: []string{CodeWorkFactorTooHigh}, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return p12(t, p, "bundle.slow.p12", testPassphrase) }},
		{name: "a PBKDF2-SHA256 key with 1,000,000 iterations is above the budget", wantErrs: []string{CodeWorkFactorTooHigh}, wantWarns: none,
			in:    func(t *testing.T, p *pki) Input { return withKey(t, p, "key.p8.1m-pbkdf2.pem", testPassphrase) },
			check: wantField(FieldPrivateKey)},
		{name: "a PBKDF2-SHA1 AES-256 key with 400,000 iterations counts two blocks each and is above the budget", wantErrs: []string{CodeWorkFactorTooHigh}, wantWarns: none,
			in:    func(t *testing.T, p *pki) Input { return withKey(t, p, "key.p8.400k-sha1-aes256.pem", testPassphrase) },
			check: wantField(FieldPrivateKey)},
		{name: "a PKCS#12 bundle with 3 x 250,000 iterations is above the budget", wantErrs: []string{CodeWorkFactorTooHigh}, wantWarns: none,
			in:    func(t *testing.T, p *pki) Input { return p12(t, p, "bundle.250k.p12", testPassphrase) },
			check: wantField(FieldPKCS12)},
		{name: "a PKCS#12 bundle without its passphrase", wantErrs: []string{CodeNeedsPassphrase}, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return p12(t, p, "bundle.p12", "") }},
		{name: "a PKCS#12 bundle with a wrong passphrase", wantErrs: []string{CodeBadPassphrase}, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return p12(t, p, "bundle.p12", "wrong") }},
		{name: "an unreadable PKCS#12 bundle", wantErrs: []string{CodePKCS12Unreadable}, wantWarns: none,
			in: func(t *testing.T, p *pki) Input {
				return Input{PKCS12: base64.StdEncoding.EncodeToString([]byte("not a pfx"))}
			}},
		{name: "a key that is not the certificate's", wantErrs: []string{CodeKeyMismatch}, wantWarns: none, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.PrivateKey = p.get(t, "leafB.key")
		})},
		{name: "an unreadable intermediate among good ones", wantErrs: []string{CodeIntermediateUnreadable}, wantWarns: none, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.Intermediates += "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
		}), check: func(t *testing.T, _ *pki, r Report) {
			if r.Errors[0].Field != "intermediates[2]" {
				t.Errorf("field = %q, want intermediates[2]", r.Errors[0].Field)
			}
		}},
		{name: "more than 16 intermediates", wantErrs: []string{CodeTooManyIntermediates}, wantWarns: slices.Repeat([]string{CodeUnusedIntermediate}, MaxIntermediates),
			in: goodWith(func(t *testing.T, p *pki, in *Input) {
				in.Intermediates = ""
				for i := range MaxIntermediates + 1 {
					in.Intermediates += p.get(t, fmt.Sprintf("many%d.pem", i))
				}
			})},
		{name: "an unreadable ca_bundle", wantErrs: []string{CodeCABundleUnreadable}, wantWarns: none, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.CABundle = "no roots here"
		})},
		{name: "an invalid hostname", wantErrs: []string{CodeHostnameInvalid}, wantWarns: none, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.Hostname = "exa mple/..test"
		})},
		{name: "an expired leaf", wantErrs: []string{CodeCertificateExpired}, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return leafOf(t, p, "leafExpired") }},
		{name: "a leaf not yet valid", wantErrs: []string{CodeCertificateNotYetValid}, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return leafOf(t, p, "leafFuture") }},
		{name: "an expired intermediate", wantErrs: []string{CodeIntermediateExpired}, wantWarns: none, in: func(t *testing.T, p *pki) Input {
			in := leafOf(t, p, "leafUnderExpired")
			in.Intermediates = p.get(t, "interExpired.pem")
			return in
		}},
		{name: "an intermediate not yet valid", wantErrs: []string{CodeIntermediateNotYetValid}, wantWarns: none, in: func(t *testing.T, p *pki) Input {
			in := leafOf(t, p, "leafUnderFuture")
			in.Intermediates = p.get(t, "interFuture.pem")
			return in
		}},
		{name: "a missing intermediate with ca_bundle is chain_incomplete", wantErrs: []string{CodeChainIncomplete}, wantWarns: []string{CodeUnusedIntermediate},
			in: goodWith(func(t *testing.T, p *pki, in *Input) {
				in.Intermediates, in.CABundle = p.get(t, "inter1.pem"), p.get(t, "root.pem")
			}), check: func(t *testing.T, _ *pki, r Report) {
				if !strings.Contains(r.Errors[0].Message, "Test Intermediate A2") {
					t.Errorf("chain_incomplete does not name the missing issuer: %q", r.Errors[0].Message)
				}
			}},
		{name: "a complete chain to a root not in ca_bundle is untrusted_root", wantErrs: []string{CodeUntrustedRoot}, wantWarns: []string{CodeRootInIntermediates},
			in: func(t *testing.T, p *pki) Input {
				return Input{Certificate: p.get(t, "leafB.pem"), PrivateKey: p.get(t, "leafB.key"),
					Intermediates: p.get(t, "interB.pem") + p.get(t, "rootB.pem"), CABundle: p.get(t, "root.pem")}
			}},
		{name: "a chain through a non-CA intermediate is chain_invalid", wantErrs: []string{CodeChainInvalid}, wantWarns: none, in: func(t *testing.T, p *pki) Input {
			in := leafOf(t, p, "leafUnderNotCA")
			in.Intermediates, in.CABundle = p.get(t, "interNotCA.pem"), p.get(t, "root.pem")
			return in
		}},
		{name: "a CA certificate given as the leaf", wantErrs: []string{CodeLeafIsCA}, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return leafOf(t, p, "leafCA") }},
		{name: "a leaf with no CN and no DNS SAN", wantErrs: []string{CodeMissingSubject}, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return leafOf(t, p, "leafNoSubject") }},
		{name: "a leaf with only a CN is accepted, like Octavia", wantErrs: none, wantWarns: none,
			in: func(t *testing.T, p *pki) Input { return leafOf(t, p, "leafCNOnly") }},
		{name: "a hostname the leaf does not cover", wantErrs: []string{CodeHostnameMismatch}, wantWarns: none, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.Hostname = "other.example.test"
		})},

		// One bundle per warning.
		{name: "an intermediate outside the chain is unused", wantErrs: none, wantWarns: []string{CodeUnusedIntermediate}, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.Intermediates += p.get(t, "unrelated.pem")
		}), check: func(t *testing.T, p *pki, r Report) {
			chainIsOrdered(t, p, r)
			if r.Warnings[0].Field != "intermediates[2]" {
				t.Errorf("field = %q", r.Warnings[0].Field)
			}
		}},
		{name: "intermediates in the wrong order are returned in order", wantErrs: none, wantWarns: []string{CodeIntermediatesOutOfOrder}, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.Intermediates = certPEM(p.inter1, p.inter2)
		}), check: chainIsOrdered},
		{name: "an RSA-1024 leaf is weak", wantErrs: none, wantWarns: []string{CodeWeakKey},
			in: func(t *testing.T, p *pki) Input { return leafOf(t, p, "leafWeak") }},
		{name: "a SHA-1 signed leaf is warned, also with ca_bundle", wantErrs: none, wantWarns: []string{CodeSHA1Signature}, in: func(t *testing.T, p *pki) Input {
			in := leafOf(t, p, "leafSHA1")
			in.CABundle = p.get(t, "root.pem")
			return in
		}},
		{name: "a root after the leaf in the certificate field is named by that field", wantErrs: none, wantWarns: []string{CodeRootInIntermediates}, in: func(t *testing.T, p *pki) Input {
			return Input{Certificate: certPEM(p.leaf, p.inter2, p.inter1, p.root), PrivateKey: p.get(t, "leaf.key")}
		}, check: func(t *testing.T, p *pki, r Report) {
			chainIsOrdered(t, p, r)
			if r.Warnings[0].Field != FieldCertificate {
				t.Errorf("field = %q, want certificate", r.Warnings[0].Field)
			}
		}},
		{name: "a root among the intermediates is left out of chain_pem", wantErrs: none, wantWarns: []string{CodeRootInIntermediates}, in: goodWith(func(t *testing.T, p *pki, in *Input) {
			in.Intermediates += p.get(t, "root.pem")
		}), check: chainIsOrdered},

		// All of it at once.
		{name: "every problem is reported, not only the first", wantErrs: []string{CodeCertificateExpired, CodeHostnameMismatch, CodeKeyMismatch},
			wantWarns: []string{CodeIntermediatesOutOfOrder, CodeUnusedIntermediate}, in: func(t *testing.T, p *pki) Input {
				in := leafOf(t, p, "leafExpired")
				in.PrivateKey = p.get(t, "leafB.key")
				in.Intermediates = p.get(t, "unrelated.pem") + certPEM(p.inter1, p.inter2)
				in.Hostname = "www.example.test"
				return in
			}},
	}
}

// TestValidateThroughHTTP runs the whole fixture table through POST
// /v1/tls/validate and asserts the exact codes, the status and that no
// secret comes back.
func TestValidateThroughHTTP(t *testing.T) {
	p := corpus(t)
	v := NewValidator(Options{Now: func() time.Time { return p.now }})
	srv := newTestServer(t, Routes(v))
	for _, tc := range validateCases() {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in(t, p)
			status, rep := validateHTTP(t, srv, in)
			errs, warns := rep.Codes()
			slices.Sort(errs)
			slices.Sort(warns)
			wantErrs, wantWarns := slices.Sorted(slices.Values(tc.wantErrs)), slices.Sorted(slices.Values(tc.wantWarns))
			if !slices.Equal(errs, wantErrs) || !slices.Equal(warns, wantWarns) {
				t.Fatalf("errors %v warnings %v, want errors %v warnings %v\nissues: %+v %+v", errs, warns, wantErrs, wantWarns, rep.Errors, rep.Warnings)
			}
			wantStatus := http.StatusOK
			if len(tc.wantErrs) > 0 {
				wantStatus = http.StatusBadRequest
			}
			if status != wantStatus || rep.Valid != (wantStatus == http.StatusOK) {
				t.Fatalf("status %d valid %v, want %d", status, rep.Valid, wantStatus)
			}
			for _, is := range append(rep.Errors, rep.Warnings...) {
				if is.Message == "" || (in.Passphrase != "" && strings.Contains(is.Message, in.Passphrase)) || strings.Contains(is.Message, "PRIVATE KEY-----") {
					t.Errorf("issue %+v has no message or leaks a secret", is)
				}
				if is.Field == "" && is.Code == CodeInputTooLarge {
					continue // about the whole input, not one field
				}
				if base, _, _ := strings.Cut(is.Field, "["); !slices.Contains(validFields, base) || (base != is.Field && !indexedField.MatchString(is.Field)) {
					t.Errorf("issue %s names field %q, not one of the request's", is.Code, is.Field)
				}
			}
			if tc.check != nil {
				tc.check(t, p, rep)
			}
		})
	}
}

// validFields are the request fields an issue may name.
var validFields = []string{FieldCertificate, FieldPrivateKey, FieldPassphrase, FieldIntermediates, FieldPKCS12, FieldCABundle, FieldHostname, FieldContainerRef}

// indexedField names one of several inputs: intermediates[2].
var indexedField = regexp.MustCompile(`^[a-z_]+\[[0-9]+\]$`)

// TestEveryCodeIsCovered fails when a result code has no case in the
// table. The codes are read from codes.go itself, so a new code cannot be
// added without a fixture case.
func TestEveryCodeIsCovered(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "codes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Code") || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					all = append(all, v)
				}
			}
		}
	}
	if len(all) < 30 {
		t.Fatalf("read %d codes from codes.go; the parse is broken", len(all))
	}
	seen := map[string]bool{}
	for _, tc := range validateCases() {
		for _, c := range append(slices.Clone(tc.wantErrs), tc.wantWarns...) {
			seen[c] = true
		}
	}
	for _, c := range all {
		if !seen[c] {
			t.Errorf("code %q has no fixture case", c)
		}
	}
}

func TestValidateNeedsARole(t *testing.T) {
	v := NewValidator(Options{})
	tests := []struct {
		name string
		p    auth.Principal
		want int
	}{
		{"a reader may validate", auth.Principal{User: "r", Project: "p1", Roles: []string{auth.RoleReader}}, http.StatusBadRequest},
		{"a member may validate", auth.Principal{User: "m", Project: "p1", Roles: []string{auth.RoleMember}}, http.StatusBadRequest},
		{"an admin may validate", auth.Principal{User: "a", Roles: []string{auth.RoleAdmin}}, http.StatusBadRequest},
		// Validating reads nothing stored: a domain-scoped Keystone member
		// (no project) may validate as README says any role may.
		{"a member with no project may validate", auth.Principal{User: "d", Roles: []string{auth.RoleMember}}, http.StatusBadRequest},
		{"a project-scoped admin may validate", auth.Principal{User: "pa", Project: "p2", Roles: []string{auth.RoleAdmin}, AdminProjectOnly: true}, http.StatusBadRequest},
		{"a principal with no clusterkeys role may not", auth.Principal{User: "o", Project: "p1", Roles: []string{"observer"}}, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServerAs(t, Routes(v), tt.p)
			// An empty request: 400 certificate_missing once let in.
			if status, body := post(t, srv, []byte(`{}`)); status != tt.want {
				t.Fatalf("status %d, want %d: %s", status, tt.want, body)
			}
		})
	}
}

func TestReportAlwaysHasEveryField(t *testing.T) {
	srv := newTestServer(t, Routes(NewValidator(Options{})))
	_, body := post(t, srv, []byte(`{"certificate":"not a certificate"}`))
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"valid", "errors", "warnings", "certificate", "host_names", "chain", "chain_pem"} {
		if _, ok := m[k]; !ok {
			t.Errorf("a report without a readable leaf lacks %q: %s", k, body)
		}
	}
}

func TestValidateRequestErrorsAreProblemJSON(t *testing.T) {
	srv := newTestServer(t, Routes(NewValidator(Options{})))
	tests := []struct {
		name     string
		body     []byte
		status   int
		wantCode string
	}{
		{"malformed JSON is a problem", []byte(`{"certificate":`), http.StatusBadRequest, api.CodeMalformedJSON},
		{"an unknown field is a problem naming it", []byte(`{"cert":"x"}`), http.StatusBadRequest, api.CodeUnknownField},
		{"a body over the limit is 413", append(append([]byte(`{"certificate":"`), bytes.Repeat([]byte("A"), MaxBody)...), `"}`...), http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(t, srv, tt.body)
			var prob api.Problem
			if err := json.Unmarshal(body, &prob); err != nil || status != tt.status || prob.Code != tt.wantCode {
				t.Fatalf("status %d body %s, want %d %s", status, body, tt.status, tt.wantCode)
			}
		})
	}
}

// fakeLoader serves one container.
type fakeLoader struct {
	ref string
	in  Input
}

func (f fakeLoader) LoadContainer(_ context.Context, ref string) (Input, error) {
	if ref != f.ref {
		return Input{}, fmt.Errorf("container %s: %w", ref, api.ErrNotFound)
	}
	return f.in, nil
}

func TestContainerRef(t *testing.T) {
	p := corpus(t)
	loader := fakeLoader{ref: "c1", in: good(t, p)}
	reg := metrics.NewRegistry()
	v := NewValidator(Options{Now: func() time.Time { return p.now }, ContainerLoader: loader, Registerer: reg})
	srv := newTestServer(t, Routes(v))

	t.Run("a loaded container is validated with the request's hostname", func(t *testing.T) {
		status, rep := validateHTTP(t, srv, Input{ContainerRef: "c1", Hostname: "nope.example.test"})
		errs, _ := rep.Codes()
		if status != http.StatusBadRequest || !slices.Equal(errs, []string{CodeHostnameMismatch}) {
			t.Fatalf("status %d errors %v", status, errs)
		}
	})
	t.Run("a missing container is a 404 problem", func(t *testing.T) {
		body, _ := json.Marshal(Input{ContainerRef: "c2"})
		status, out := post(t, srv, body)
		if status != http.StatusNotFound || !strings.Contains(string(out), api.CodeNotFound) {
			t.Fatalf("status %d body %s", status, out)
		}
	})
	t.Run("container_ref with material conflicts", func(t *testing.T) {
		in := good(t, p)
		in.ContainerRef = "c1"
		_, rep := validateHTTP(t, srv, in)
		if errs, _ := rep.Codes(); !slices.Equal(errs, []string{CodeConflictingInputs}) {
			t.Fatalf("errors %v", errs)
		}
	})
	t.Run("metrics count results and codes", func(t *testing.T) {
		if got := counterValue(t, v.results.WithLabelValues("invalid")); got != 2 {
			t.Errorf("invalid validations = %v, want 2", got)
		}
		if got := counterValue(t, v.issues.WithLabelValues("error", CodeHostnameMismatch)); got != 1 {
			t.Errorf("hostname_mismatch count = %v, want 1", got)
		}
		// A second validator on the same registry shares the counters.
		v2 := NewValidator(Options{Registerer: reg})
		if v2.results != v.results {
			t.Error("second validator did not reuse the registered counters")
		}
	})
}

func TestInputNeverPrintsSecrets(t *testing.T) {
	in := Input{PrivateKey: "-----BEGIN PRIVATE KEY-----", Passphrase: "hunter2", Certificate: "c"}
	for _, s := range []string{in.String(), fmt.Sprintf("%v", in), fmt.Sprintf("%+v", in), fmt.Sprintf("%#v", in), in.LogValue().String()} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "BEGIN") {
			t.Errorf("%q shows a secret", s)
		}
	}
}

func TestKeyErrorCodes(t *testing.T) {
	p := corpus(t)
	_, err := ParsePrivateKey([]byte(p.openssl(t, "key.p8.aes256-sha256.pem")), "")
	if KeyErrorCode(err) != CodeNeedsPassphrase {
		t.Fatalf("err = %v, want needs_passphrase", err)
	}
	if KeyErrorCode(errors.New("other")) != "" {
		t.Fatal("a foreign error has a code")
	}
	k, err := ParsePrivateKey([]byte(p.openssl(t, "key.p8.aes256-sha256.pem")), testPassphrase)
	if err != nil || !p.leafKey.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(publicKey(k)) {
		t.Fatalf("decrypted key is not the leaf key: %v", err)
	}
}

func counterValue(t *testing.T, c metrics.Counter) float64 {
	t.Helper()
	return metricstest.CounterValue(t, c)
}
