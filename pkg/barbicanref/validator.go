package barbicanref

import (
	"fmt"

	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
	"github.com/clusterkeys/clusterkeys/pkg/tlsbundle"
)

// NewValidator builds the TLS bundle validator cfg describes, with its
// metrics on reg: it loads Barbican containers when cfg names a Barbican
// endpoint (--barbican-endpoint), with the caller's own token under --auth
// keystone. validatebundle and localrun build it alike.
func NewValidator(cfg config.Config, reg metrics.Registerer) (*tlsbundle.Validator, error) {
	opts := tlsbundle.Options{Registerer: reg}
	if cfg.BarbicanEndpoint != "" {
		loader, err := New(Config{Endpoint: cfg.BarbicanEndpoint, CallerToken: cfg.Auth == "keystone"})
		if err != nil {
			return nil, fmt.Errorf("barbican container loader: %w", err)
		}
		opts.ContainerLoader = loader
	}
	return tlsbundle.NewValidator(opts), nil
}
