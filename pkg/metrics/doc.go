// Package metrics is the only package of clusterkeys that names the
// metrics library: the packages that count (the gateway, the CA, key
// wrapping, custody, the KMS shim, …) declare and register their
// collectors through it, and servers expose them with Handler.
//
// # Builds
//
// By default it is a thin layer of type aliases and wrappers over the
// Prometheus client (github.com/prometheus/client_golang), so that names,
// labels, help texts and the /metrics exposition are exactly Prometheus's.
// localrun and the KMS shim are built so and serve /metrics.
//
// Built with the tag clusterkeys.metrics.none, every collector is a no-op
// that records nothing, Register registers nothing, and Handler answers
// /metrics with an empty exposition (200, no series); the binary links no
// Prometheus package. The Lambda bootstraps are built so (the Makefile's
// LAMBDA_TAGS, for make lambda and make package): nothing scrapes a Lambda
// sandbox (API Gateway routes no /metrics to it, and each sandbox lives
// for a few requests), and the Prometheus client's package initialisation
// (its runtime/metrics descriptions, procfs, protobuf descriptors) and
// size cost every cold start.
//
// Both builds have the same API; `go vet -tags clusterkeys.metrics.none`
// (make lint) keeps the no-op one compiling.
package metrics
