#!/usr/bin/env bash
# gen.sh DIR PASSPHRASE — the OpenSSL half of the tlsbundle fixture corpus.
#
# The Go half (fixtures_test.go) writes a PKI into DIR as PEM: leaf.key
# (PKCS#8, unencrypted), leaf.pem, inter1.pem (issued by root), inter2.pem
# (issued by inter1, issuer of leaf), root.pem. This script turns them into
# every form that Go cannot write itself, the way operators produce them:
# encrypted PKCS#8 (PBES2 with several PRFs/ciphers, scrypt, and PBES1),
# legacy encrypted PEM, PKCS#7 (PEM and DER) and PKCS#12 (with and without
# a passphrase, modern and 3DES, and one with a refused work factor).
# Nothing here is committed output: the tests run it into t.TempDir().
set -euo pipefail
dir=${1:?usage: gen.sh DIR PASSPHRASE}
pass=${2:?usage: gen.sh DIR PASSPHRASE}
cd "$dir"
umask 077
export PASS="$pass"
ossl() { openssl "$@" 2>/dev/null; }

# Encrypted PKCS#8, PBES2 (what openssl pkcs8 -topk8 writes by default is
# the first one).
ossl pkcs8 -topk8 -in leaf.key -passout env:PASS -out key.p8.aes256-sha256.pem -v2 aes-256-cbc -v2prf hmacWithSHA256
ossl pkcs8 -topk8 -in leaf.key -passout env:PASS -out key.p8.aes128-sha1.pem -v2 aes-128-cbc -v2prf hmacWithSHA1
ossl pkcs8 -topk8 -in leaf.key -passout env:PASS -out key.p8.aes192-sha512.pem -v2 aes-192-cbc -v2prf hmacWithSHA512
ossl pkcs8 -topk8 -in leaf.key -passout env:PASS -out key.p8.des3.pem -v2 des3
ossl pkcs8 -topk8 -in leaf.key -passout env:PASS -out key.p8.scrypt.pem -scrypt
ossl pkcs8 -topk8 -in leaf.key -passout env:PASS -outform DER -out key.p8.aes256.der -v2 aes-256-cbc
# PBES1 / PKCS#12 PBE: refused as unsupported_key_encryption.
ossl pkcs8 -topk8 -in leaf.key -passout env:PASS -out key.p8.pbes1.pem -v1 PBE-SHA1-3DES

# Legacy OpenSSL encrypted PEM (Proc-Type: 4,ENCRYPTED / DEK-Info).
ossl pkey -in leaf.key -traditional -aes256 -passout env:PASS -out key.legacy.pem

# PKCS#7 certs-only, intermediates deliberately in reverse order.
ossl crl2pkcs7 -nocrl -certfile inter2.pem -certfile inter1.pem -out inters.p7b.pem
ossl crl2pkcs7 -nocrl -certfile inter2.pem -certfile inter1.pem -outform DER -out inters.p7b.der

# PKCS#12: OpenSSL 3 defaults (PBES2 AES-256-CBC, PBKDF2-SHA256, SHA-256 MAC).
cat inter2.pem inter1.pem > chain.pem
ossl pkcs12 -export -inkey leaf.key -in leaf.pem -certfile chain.pem -passout env:PASS -out bundle.p12
ossl pkcs12 -export -inkey leaf.key -in leaf.pem -certfile chain.pem -passout pass: -out bundle.nopass.p12
ossl pkcs12 -export -inkey leaf.key -in leaf.pem -certfile chain.pem -passout env:PASS \
	-keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES -macalg sha1 -out bundle.3des.p12
# 400,000 iterations for key, certificates and MAC: 1,000,000 work units,
# above the budget of 600,000.
ossl pkcs12 -export -inkey leaf.key -in leaf.pem -certfile chain.pem -passout env:PASS -iter 400000 -out bundle.slow.p12
# 250,000 iterations: 625,000 units (the SHA-256 MAC counts half), just above
# the budget; the former limit of 1 M iterations let it through.
ossl pkcs12 -export -inkey leaf.key -in leaf.pem -certfile chain.pem -passout env:PASS -iter 250000 -out bundle.250k.p12
echo "gen.sh: wrote $(ls | wc -l) files into $dir"
