//go:build !(clusterkeys.store.sqlite || !clusterkeys.store.postgres)

package all

import "github.com/clusterkeys/clusterkeys/pkg/config"

func init() { config.RegisterUnlinked(lookup(true, "sqlite").unlinked()) }
