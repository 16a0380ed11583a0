// Package metrics registers Prometheus collectors so that several
// instances of one component in a process (two Authorities, a second
// Custody, tests sharing a registry) share one set of series instead of
// failing on the second registration.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns it. When a collector with the
// same descriptors is already registered and has c's type, Register returns
// that one instead, so the caller counts into the exported series. A nil
// reg registers nothing and returns c. Any other failure returns c, which
// then counts unexported, and the error.
func Register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing, nil
		}
	}
	return c, err
}
