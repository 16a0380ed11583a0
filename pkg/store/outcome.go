package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// NotWritten reports whether err, returned by a store write, says for sure
// that nothing was written: a lost compare-and-swap
// (api.ErrGenerationMismatch), an object that already exists
// (api.ErrConflict) or one that is missing (api.ErrNotFound). A store
// answers these from inside a transaction it then rolls back.
//
// Any other error (a dropped connection, a cancelled context, a busy
// database, a failed commit) leaves the outcome unknown: the write may have
// committed. A caller that generated a key for the write must then keep it;
// the reconciler (pkg/reconcile) destroys it later if no row names it.
func NotWritten(err error) bool {
	return errors.Is(err, api.ErrGenerationMismatch) || errors.Is(err, api.ErrConflict) || errors.Is(err, api.ErrNotFound)
}

// Wrap returns err with the context msg, wrapping sentinel too when it is
// not nil: the api sentinel (api.ErrNotFound, api.ErrConflict,
// api.ErrUnavailable, …) a store maps err's cause to.
func Wrap(err, sentinel error, msg string) error {
	if sentinel != nil {
		return fmt.Errorf("%s: %w: %w", msg, sentinel, err)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// KeyRefs are the custody key refs the metadata store names.
type KeyRefs struct {
	// Live are the refs that must stay in custody: the active generation of
	// every cluster's CA and every version of every KEK (old versions keep
	// unwrapping).
	Live []string
	// Retired are the refs of CA generations a rekey replaced: their keys
	// sign nothing more and must be destroyed.
	Retired []string
}

// Blob is a software custody blob as a listing shows it: its ref and when
// it was stored, never its contents.
type Blob struct {
	Ref       string
	CreatedAt time.Time
}
