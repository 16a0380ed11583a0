//go:build clusterkeys.store.postgres || !clusterkeys.store.sqlite

package all

import _ "github.com/clusterkeys/clusterkeys/pkg/store/postgres" // --store postgres://…
