package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// CheckTimes refuses times outside the years 0000–9999 (the zero time
// stands for none and passes): what every store can store and compare in
// order, so that all stores accept the same records.
func CheckTimes(ts ...time.Time) error {
	for _, t := range ts {
		if t.IsZero() {
			continue
		}
		if y := t.UTC().Year(); y < 0 || y > 9999 {
			return fmt.Errorf("time %s: year %d outside 0000-9999", t.UTC().Format(time.RFC3339), y)
		}
	}
	return nil
}

// ValidInstant reports whether t is an instant a store can compare: not
// the zero time (which stands for none) and one CheckTimes accepts.
func ValidInstant(t time.Time) bool {
	return !t.IsZero() && CheckTimes(t) == nil
}

// CheckNewCluster checks the records a store's CreateCluster is given: a
// name, a generation of at least 1 that first carries, first's key ref,
// first's cluster empty or c's name, and times CheckTimes accepts.
func CheckNewCluster(c Cluster, first CAGeneration) error {
	if c.Name == "" || first.KeyRef == "" || c.Generation < 1 || first.Generation != c.Generation ||
		(first.Cluster != "" && first.Cluster != c.Name) {
		return fmt.Errorf("create cluster %q: invalid record (name, key ref, generation %d vs first %d, first's cluster %q)",
			c.Name, c.Generation, first.Generation, first.Cluster)
	}
	if err := CheckTimes(c.CreatedAt, first.NotBefore, first.NotAfter, first.CreatedAt, first.RetiredAt, first.TrustedUntil); err != nil {
		return fmt.Errorf("create cluster %q: %w", c.Name, err)
	}
	return nil
}

// CheckRekey checks what a store's Rekey is given: next of cluster (or of
// no cluster named), with a key ref, the generation after expected (else an
// error wrapping api.ErrGenerationMismatch), and times CheckTimes accepts.
func CheckRekey(cluster string, expected int, next CAGeneration, now, trustedUntil time.Time) error {
	if next.Cluster != "" && next.Cluster != cluster {
		return fmt.Errorf("rekey cluster %q: next generation belongs to cluster %q", cluster, next.Cluster)
	}
	if next.KeyRef == "" {
		return fmt.Errorf("rekey cluster %q: next generation has no key ref", cluster)
	}
	if next.Generation != expected+1 {
		return fmt.Errorf("rekey cluster %q: next generation %d does not follow expected %d: %w",
			cluster, next.Generation, expected, api.ErrGenerationMismatch)
	}
	if err := CheckTimes(now, trustedUntil, next.NotBefore, next.NotAfter, next.CreatedAt, next.RetiredAt, next.TrustedUntil); err != nil {
		return fmt.Errorf("rekey cluster %q: %w", cluster, err)
	}
	return nil
}

// CheckCertificateQuery checks a query of a store's Certificates: a
// cluster, a positive limit, a position (After) with an issue time and a
// serial, and a Status among StatusValid, StatusRevoked and StatusExpired
// with a valid instant (Now).
func CheckCertificateQuery(q CertificateQuery) error {
	if q.Cluster == "" {
		return errors.New("a cluster is required")
	}
	if q.Limit < 1 {
		return fmt.Errorf("limit %d: must be positive", q.Limit)
	}
	if k := q.After; k != nil {
		if !ValidInstant(k.IssuedAt) || k.Serial == "" {
			return fmt.Errorf("invalid position (%v, %q)", k.IssuedAt, k.Serial)
		}
	}
	if q.Status == "" {
		return nil
	}
	if !ValidInstant(q.Now) {
		return fmt.Errorf("status %q needs a valid instant, not %v", q.Status, q.Now)
	}
	switch q.Status {
	case StatusRevoked, StatusExpired, StatusValid:
		return nil
	}
	return fmt.Errorf("unknown status %q", q.Status)
}
