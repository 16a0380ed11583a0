package backends

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/auth/keystone"
	"github.com/clusterkeys/clusterkeys/pkg/config"
)

// Authenticator returns the authenticator cfg.Auth names.
func Authenticator(ctx context.Context, cfg config.Config, log *slog.Logger) (auth.Authenticator, error) {
	switch cfg.Auth {
	case "token-file":
		return auth.LoadTokenFile(cfg.TokenAuthFile)
	case "keystone":
		return keystone.New(ctx, keystone.Config{Cloud: cfg.OSCloud, CacheTTL: cfg.AuthCacheTTL})
	}
	return nil, fmt.Errorf("authentication %q is not built in yet", cfg.Auth)
}
