package tlsbundle

// Result codes. Each is a stable, documented part of the API: clients may
// switch on them. An error code makes the bundle invalid (HTTP 400); a
// warning code never does.
const (
	// CodeInputTooLarge: the certificate material exceeds MaxInputBytes.
	// Nothing else is checked.
	CodeInputTooLarge = "input_too_large"
	// CodeConflictingInputs: a field was given together with another that
	// supplies the same thing (pkcs12 with certificate or private_key,
	// container_ref with any of the material fields).
	CodeConflictingInputs = "conflicting_inputs"
	// CodeContainerRefUnsupported: container_ref was given but this
	// deployment has no container loader (no Barbican configured).
	CodeContainerRefUnsupported = "container_ref_unsupported"

	// CodeCertificateMissing: neither certificate nor pkcs12 was given.
	CodeCertificateMissing = "certificate_missing"
	// CodeCertificateUnreadable: the certificate is neither a PEM
	// CERTIFICATE nor base64 DER that parses as X.509.
	CodeCertificateUnreadable = "certificate_unreadable"
	// CodeKeyMissing: no private key was given (a load balancer cannot
	// serve a certificate without its key).
	CodeKeyMissing = "key_missing"
	// CodeKeyUnreadable: the private key is not PKCS#1, SEC1, PKCS#8,
	// encrypted PKCS#8 or legacy encrypted PEM, or is corrupt.
	CodeKeyUnreadable = "key_unreadable"
	// CodeNeedsPassphrase: the key or PKCS#12 bundle is encrypted and no
	// passphrase was given.
	CodeNeedsPassphrase = "needs_passphrase"
	// CodeBadPassphrase: a passphrase was given but does not decrypt the
	// key or PKCS#12 bundle.
	CodeBadPassphrase = "bad_passphrase"
	// CodeUnsupportedKeyEncryption: the key or PKCS#12 bundle is encrypted
	// with a scheme this service does not implement (e.g. PBES1, RC2).
	CodeUnsupportedKeyEncryption = "unsupported_key_encryption"
	// CodeWorkFactorTooHigh: decrypting would cost more than one request's
	// key-derivation budget (PBKDF2 or PKCS#12 KDF work above MaxKDFWork,
	// about half a second of CPU; scrypt above MaxScryptCost or
	// MaxScryptMemory); the work is refused before any of it is done. The
	// field is private_key or pkcs12.
	CodeWorkFactorTooHigh = "work_factor_too_high"
	// CodeKeyMismatch: the private key is not the key of the certificate.
	CodeKeyMismatch = "key_mismatch"
	// CodeIntermediateUnreadable: an intermediates entry (PEM block,
	// PKCS#7 or DER) does not parse.
	CodeIntermediateUnreadable = "intermediate_unreadable"
	// CodeTooManyIntermediates: more than MaxIntermediates certificates
	// were given as intermediates.
	CodeTooManyIntermediates = "too_many_intermediates"
	// CodePKCS12Unreadable: pkcs12 is not base64 of a PKCS#12 PFX, or the
	// PFX holds no certificate or no key.
	CodePKCS12Unreadable = "pkcs12_unreadable"
	// CodeCABundleUnreadable: ca_bundle holds a block that is not a
	// certificate, or no certificate at all.
	CodeCABundleUnreadable = "ca_bundle_unreadable"
	// CodeHostnameInvalid: hostname is not a DNS name or IP address.
	CodeHostnameInvalid = "hostname_invalid"

	// CodeCertificateExpired: the leaf's not_after is in the past.
	CodeCertificateExpired = "certificate_expired"
	// CodeCertificateNotYetValid: the leaf's not_before is in the future.
	CodeCertificateNotYetValid = "certificate_not_yet_valid"
	// CodeIntermediateExpired: a certificate of the chain above the leaf
	// has expired: an intermediate, or the ca_bundle root the chain ends
	// at (field ca_bundle).
	CodeIntermediateExpired = "intermediate_expired"
	// CodeIntermediateNotYetValid: a certificate of the chain above the
	// leaf (an intermediate, or the ca_bundle root) is not valid yet.
	CodeIntermediateNotYetValid = "intermediate_not_yet_valid"
	// CodeChainIncomplete: with ca_bundle, the chain stops at a certificate
	// whose issuer is neither among the intermediates nor in ca_bundle (a
	// missing intermediate).
	CodeChainIncomplete = "chain_incomplete"
	// CodeUntrustedRoot: with ca_bundle, the chain is complete up to a
	// self-signed root, but that root is not in ca_bundle.
	CodeUntrustedRoot = "untrusted_root"
	// CodeChainInvalid: with ca_bundle, the chain links to a trusted root
	// but x509 path validation still refuses it (name constraints, path
	// length, key usage); the message says why.
	CodeChainInvalid = "chain_invalid"
	// CodeLeafIsCA: the certificate given as the leaf is a CA certificate
	// (basic constraints CA:TRUE).
	CodeLeafIsCA = "leaf_is_ca"
	// CodeMissingSubject: the leaf has neither a common name nor a DNS
	// subject alternative name, so there is no host name to serve it for
	// (Octavia's MissingCertSubject).
	CodeMissingSubject = "missing_subject"
	// CodeHostnameMismatch: hostname was given and the leaf does not cover
	// it (SANs, or CN when the leaf has no SANs).
	CodeHostnameMismatch = "hostname_mismatch"
)

// Warning codes: reported in warnings, never make a bundle invalid.
const (
	// CodeUnusedIntermediate: an intermediate is not part of the leaf's
	// chain; it is left out of chain_pem.
	CodeUnusedIntermediate = "unused_intermediate"
	// CodeIntermediatesOutOfOrder: the intermediates were not given in
	// chain order (each one issued by the next); chain and chain_pem are
	// returned in the right order.
	CodeIntermediatesOutOfOrder = "intermediates_out_of_order"
	// CodeWeakKey: a certificate of the chain has an RSA key shorter than
	// 2048 bits.
	CodeWeakKey = "weak_key"
	// CodeSHA1Signature: a certificate of the chain (other than a
	// self-signed root) is signed with SHA-1.
	CodeSHA1Signature = "sha1_signature"
	// CodeLegacyKeyEncryption: the key uses legacy OpenSSL PEM encryption
	// (Proc-Type/DEK-Info, MD5 key derivation without iterations); it was
	// read, but encrypted PKCS#8 should be used instead.
	CodeLegacyKeyEncryption = "legacy_key_encryption"
	// CodeRootInIntermediates: the intermediates include a self-signed root;
	// clients must already have it, so it is left out of chain_pem.
	CodeRootInIntermediates = "root_in_intermediates"
)

// Field names used in Issue.Field: the request fields, with an index for
// one intermediate (e.g. "intermediates[1]", counting from 0 in the
// order given).
const (
	FieldCertificate   = "certificate"
	FieldPrivateKey    = "private_key"
	FieldIntermediates = "intermediates"
	FieldPassphrase    = "passphrase"
	FieldPKCS12        = "pkcs12"
	FieldContainerRef  = "container_ref"
	FieldHostname      = "hostname"
	FieldCABundle      = "ca_bundle"
)
