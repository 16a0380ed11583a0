package store

// How the stores keep a certificate's expiry materialised (the lapsed
// mark of migration 0008): see MarkExpired in each store.
//
// A status=valid or status=expired listing reads the never-revoked
// certificates whose mark disagrees with their status at the listing's
// instant by not_after, and sorts them; the rest it walks in listing
// order. Both stay about a page while the marks keep up, so a listing by
// status that finds at least LapseBacklog expired certificates not yet
// marked marks them first, in transactions of at most LapseBatch rows.
// The marks only say where a listing looks for a row, never whether it
// matches, so a listing is exact whatever is marked, whoever marked it and
// whatever its clock.
const (
	// LapseBacklog is how many expired and unmarked certificates of a
	// cluster a listing by status sorts before it marks them.
	LapseBacklog = 64
	// LapseBatch is the most rows one marking transaction updates, so that
	// a large backlog (a registry migrated to 0008, or one not listed for a
	// long time) never holds the write lock for long.
	LapseBatch = 10000
)
