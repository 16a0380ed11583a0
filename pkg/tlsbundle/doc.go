// Package tlsbundle validates a TLS certificate bundle before a load
// balancer accepts it (the validate-TLS-bundle function, POST
// /v1/tls/validate), and tells the operator everything that is wrong in
// one answer, each reason with a stable code (see the Code constants) and
// the request field it concerns.
//
// Parsing and validation ([Validate], [ParsePrivateKey],
// [ParseCertificates], [ParsePKCS7], [ParsePKCS12]) do no I/O. The HTTP
// side ([Validator], [Routes]) adds the clock, metrics and the optional
// [ContainerLoader] for container_ref. The package imports no store or key
// custody code, so the validatebundle function's binary stays small.
//
// # Inputs
//
// The certificate is PEM or base64 DER; certificates after the first are
// taken as intermediates. Keys: PKCS#1, SEC1, PKCS#8, encrypted PKCS#8
// (PBES2 with PBKDF2-HMAC-SHA1/224/256/384/512 or scrypt, and AES-128/192/
// 256-CBC or DES-EDE3-CBC: everything OpenSSL 1.1 and 3 write) and legacy
// OpenSSL encrypted PEM. Intermediates: concatenated PEM in any order and
// with any text between blocks (read with pem.Decode), PKCS#7 as PEM or
// base64 DER. PKCS#12: base64, with or without a passphrase, decoded with
// software.sslmate.com/src/go-pkcs12 (maintained, supports PBES2/AES and
// PBMAC1; golang.org/x/crypto/pkcs12 is frozen and reads only 3DES/RC2).
//
// # What is refused, and why
//
//   - More than [MaxInputBytes] of material or more than [MaxIntermediates]
//     intermediates: bounded parsing and chain building per request.
//   - Key derivation above the per-request budget [MaxKDFWork] (PBKDF2
//     iterations weighted by output blocks and hash; the PKCS#12 MAC and
//     every encrypted bag are added up before anything is derived), or scrypt above
//     [MaxScryptCost] / [MaxScryptMemory]: one request must not cost
//     seconds of CPU or hundreds of MiB (CodeWorkFactorTooHigh).
//   - PBES1 and PKCS#12-PBE-encrypted PKCS#8 keys (DES, RC2, MD5), and
//     PBES2 ciphers other than AES-CBC/3DES-CBC:
//     CodeUnsupportedKeyEncryption. (Inside a PKCS#12 file, go-pkcs12 does
//     read 3DES and RC2-40, as Windows still writes them.)
//   - X25519 keys, which cannot sign a certificate.
//
// Legacy encrypted PEM ("Proc-Type: 4,ENCRYPTED") is read with
// x509.DecryptPEMBlock and reported with the CodeLegacyKeyEncryption
// warning. That function is deprecated because, where a server holds the
// passphrase, its unauthenticated CBC padding makes a padding oracle;
// here the caller sends both the ciphertext and the passphrase, so the
// answer reveals nothing the caller does not already have.
//
// # Chain checks
//
// Without ca_bundle only linkage is checked: the leaf is linked to its
// issuers among the intermediates by name and signature, out-of-order and
// unused intermediates are warnings, and chain/chain_pem come back in
// order. With ca_bundle the chain must end at one of its roots: a chain
// that stops at a certificate whose issuer is nowhere is
// CodeChainIncomplete; a chain that reaches a self-signed root not in
// ca_bundle is CodeUntrustedRoot; then x509 path validation runs for the
// remaining constraints (CodeChainInvalid). A valid chain anchored in
// ca_bundle has each signature checked once: the path validation runs
// first on the chain the name links give, and when it succeeds with exactly
// that chain, the separate link checks would only repeat it.
//
// # What a Validator remembers
//
// A [Validator] (not [Validate]) keeps, per process, the certificates it
// has parsed (by DER, up to 4 MiB of it, with their subject, issuer,
// serial, fingerprint and PEM text) and the path validations that
// succeeded (by the SHA-256 of the leaf, the intermediates and the
// ca_bundle roots, each with its validity at the time of the request), so
// that a bundle validated again is neither parsed nor has a signature
// checked a second time. Both are pure functions of the bytes (and of the
// validity of each certificate), so the report is the same with or without
// them, and nothing is shared between instances. Private keys are never
// remembered: each request parses its key and compares it with the
// certificate's. [Options.NoCache] turns both off.
package tlsbundle
