//go:build !(clusterkeys.store.postgres || !clusterkeys.store.sqlite)

package all

import "github.com/clusterkeys/clusterkeys/pkg/config"

func init() { config.RegisterUnlinked(lookup(true, "postgres").unlinked()) }
