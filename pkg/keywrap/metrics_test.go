//go:build !clusterkeys.metrics.none

package keywrap_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
)

// TestOperationsCounted checks clusterkeys_keywrap_operations_total counts
// each op by result, and shows only the series that counted something.
func TestOperationsCounted(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	svc := keywrap.New(f.st, f.custody, keywrap.Options{Now: f.clock.Now, Registerer: reg})
	ctx := context.Background()
	if _, _, _, err := svc.Create(ctx, "k1", "p1"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, _, err := svc.Wrap(ctx, "k1", []byte("data key"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := svc.Wrap(ctx, "missing", []byte("data key"), nil); err == nil {
		t.Fatal("wrap under a missing KEK succeeded")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		if mf.GetName() != "clusterkeys_keywrap_operations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			got = append(got, fmt.Sprintf("%s/%s %g", l["op"], l["result"], m.GetCounter().GetValue()))
		}
	}
	slices.Sort(got)
	want := []string{"create/ok 1", "wrap/client_error 1", "wrap/ok 3"}
	if !slices.Equal(got, want) {
		t.Fatalf("counted %q, want %q", got, want)
	}
}
