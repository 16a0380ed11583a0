//go:build !clusterkeys.metrics.none

package ca

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// counters gathers reg into "name{label=value,…}" → value.
func counters(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetCounter().GetValue()
		}
	}
	return out
}

func TestMetricsCountOperationsByResult(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	f := newFixture(t, Options{Registerer: reg})
	f.mustCreate(t, "c1", CreateRequest{})
	if _, _, err := f.a.CreateCA(as(member), "c1", CreateRequest{}); err != nil {
		t.Fatal(err)
	}
	signClient(t, f, "c1")
	if _, err := f.a.Sign(as(member), "c1", SignRequest{CSR: "garbage", Profile: "server"}); err == nil {
		t.Fatal("garbage signed")
	}
	if _, err := f.a.Rekey(as(member), "c1", RekeyRequest{}); err != nil {
		t.Fatal(err)
	}
	// A second Authority on the same registry shares the counters.
	b := New(f.st, f.keys, Options{Registerer: reg, Now: f.clock.Now, Logger: f.a.log})
	if _, err := b.Rekey(as(member), "c1", RekeyRequest{}); err != nil {
		t.Fatal(err)
	}

	want := map[string]float64{
		"clusterkeys_ca_creates_total{result=created}":                  1,
		"clusterkeys_ca_creates_total{result=exists}":                   1,
		"clusterkeys_ca_rekeys_total{result=ok}":                        2,
		"clusterkeys_ca_signs_total{profile=client,result=ok}":          1,
		"clusterkeys_ca_signs_total{profile=server,result=invalid_csr}": 1,
	}
	if got := counters(t, reg); !maps.Equal(got, want) {
		t.Fatalf("metrics:\n%v\nwant\n%v", slices.Sorted(maps.Keys(got)), want)
	}
}
