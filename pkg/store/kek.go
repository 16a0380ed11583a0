package store

import (
	"fmt"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// CheckNewKEK checks the records a store's CreateKEK is given: a name, an
// active version of at least 1 that first carries, a key ref and key id,
// first's name empty or the KEK's, and times CheckTimes accepts.
func CheckNewKEK(k KEK, first KEKVersion) error {
	if k.Name == "" || k.ActiveVersion < 1 || first.Version != k.ActiveVersion || first.KeyRef == "" || first.KeyID == "" ||
		(first.Name != "" && first.Name != k.Name) {
		return fmt.Errorf("create KEK %q: invalid record (name, active version %d vs first %d, key ref, key id, first's name %q)",
			k.Name, k.ActiveVersion, first.Version, first.Name)
	}
	if err := CheckTimes(k.CreatedAt, first.CreatedAt); err != nil {
		return fmt.Errorf("create KEK %q: %w", k.Name, err)
	}
	return nil
}

// CheckKEKRotation checks the version a store's RotateKEK is given: its
// name empty or the KEK's, a key ref and key id, and the version after
// expected (else an error wrapping api.ErrGenerationMismatch), and a
// creation time CheckTimes accepts.
func CheckKEKRotation(name string, expected int, next KEKVersion) error {
	if (next.Name != "" && next.Name != name) || next.KeyRef == "" || next.KeyID == "" {
		return fmt.Errorf("rotate KEK %q: invalid next version (name %q, key ref, key id)", name, next.Name)
	}
	if next.Version != expected+1 {
		return fmt.Errorf("rotate KEK %q: next version %d does not follow expected %d: %w",
			name, next.Version, expected, api.ErrGenerationMismatch)
	}
	if err := CheckTimes(next.CreatedAt); err != nil {
		return fmt.Errorf("rotate KEK %q: %w", name, err)
	}
	return nil
}
