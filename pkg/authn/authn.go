// Package authn builds the authenticator a configuration names (--auth),
// without linking any store or key custody, so that every function,
// validatebundle included, authenticates the same way.
package authn

import (
	"context"
	"fmt"

	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/auth/keystone"
	"github.com/clusterkeys/clusterkeys/pkg/config"
)

// New returns the authenticator cfg.Auth names: the static token file, or
// Keystone with the service credentials of cfg.OSCloud.
func New(ctx context.Context, cfg config.Config) (auth.Authenticator, error) {
	switch cfg.Auth {
	case "token-file":
		return auth.LoadTokenFile(cfg.TokenAuthFile)
	case "keystone":
		return keystone.New(ctx, keystone.Config{Cloud: cfg.OSCloud, CacheTTL: cfg.AuthCacheTTL, AdminProject: cfg.AdminProject})
	}
	return nil, fmt.Errorf("authentication %q is not built in", cfg.Auth)
}
