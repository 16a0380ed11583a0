// Package kmsplugin is the clusterkeys KMS shim: a Kubernetes KMS v2 plugin
// (k8s.io/kms/apis/v2, served through k8s.io/kms/pkg/service) that wraps
// kube-apiserver's seeds under a clusterkeys key-encryption key (KEK).
//
// # Protocol
//
// Encrypt wraps the plaintext (kube-apiserver's 32-byte seed) with the active
// version of the KEK the Plugin is bound to and returns that version's public
// KeyID (a hash, never secret material) as key_id. Rotating the KEK therefore
// changes key_id, which makes kube-apiserver generate a new seed. Decrypt
// unwraps with the version the ciphertext itself names, so data written
// under older versions keeps decrypting; the key_id of the request is only
// checked against that version, never used to choose the key.
//
// Every ciphertext is bound to the associated data [AAD], so a KMS
// ciphertext cannot be unwrapped through the HTTP unwrap route under some
// other context, and the other way round.
//
// # Health
//
// Status answers healthz "ok" only after a real wrap and unwrap round trip
// of a random value through custody; a healthy answer is cached briefly
// (Config.StatusTTL), a failure never is. When custody is down, Status
// returns an error: kube-apiserver then stops writing once its write seed
// expires, which is the point.
//
// # Limits
//
// kube-apiserver refuses a key_id or ciphertext longer than 1 KiB and
// annotation keys that are not fully qualified domain names; the Plugin
// checks its own answers against the same limits ([CheckEncryptResponse]) so
// that a misconfiguration shows as a clear error here, not as a refused
// write there.
//
// # Serving
//
// [Listen] opens the unix socket (mode 0600, a stale socket from a dead
// process removed, a live one left alone) and [Server] serves gRPC on it with
// a graceful [Server.Shutdown]. [Metrics] are Prometheus collectors for
// operations, latency, errors, gRPC connections (kube-apiserver reconnects)
// and custody recoveries. KMS v1beta1 is not served: kube-apiserver has
// deprecated it and it has no key_id, so rotation could not be signalled.
package kmsplugin
