//go:build clusterkeys.store.sqlite || !clusterkeys.store.postgres

package all

import _ "github.com/clusterkeys/clusterkeys/pkg/store/sqlite" // --store sqlite:PATH
