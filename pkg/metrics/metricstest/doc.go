// Package metricstest reads the values of collectors made with
// pkg/metrics, for tests that check what a component counts. In a build
// with the tag clusterkeys.metrics.none, where nothing is counted, its
// functions skip the calling test.
package metricstest
