package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/lab"
	"github.com/rendezvous-core/rendezvous/roamsim"
	"github.com/rendezvous-core/rendezvous/topology"
)

// TestLabNearestRegionEveryContinent: devices roaming in 30 countries on
// every inhabited continent attach through the real S6a, S8 and GTP-U of the
// lab, each lands on the region topology ranks nearest to its visited
// country, and passes data to the internet namespace and back.
func TestLabNearestRegionEveryContinent(t *testing.T) {
	countries := roamsim.DefaultCountries()
	l := startLab(t, 2*len(countries))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d, err := l.StartDevices(ctx, lab.DevicesConfig{Countries: countries, Mode: roamsim.OneShot, AttachRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	<-d.Done()
	rep, err := d.Stop()
	if err != nil {
		t.Fatalf("roamsim: %v", err)
	}
	if len(rep.Devices) != 2*len(countries) {
		t.Fatalf("report has %d devices, want %d", len(rep.Devices), 2*len(countries))
	}
	a := lab.Assess(rep, countries, nil)
	if !a.OK || a.Countries != len(countries) || len(a.Continents) < 6 {
		t.Errorf("assessment: %+v", a)
	}
	served := map[topology.RegionID]int{}
	for _, dev := range rep.Devices {
		served[dev.Region]++
		if dev.FailureCount > 0 {
			t.Errorf("%s in %s: failures %+v", dev.IMSI, dev.Country, dev.Failures)
		}
	}
	for _, r := range topology.Regions() {
		if served[r.ID] == 0 {
			t.Errorf("no device was served by %s: %v", r.ID, served)
		}
	}
	if t.Failed() {
		_ = rep.WriteTable(os.Stderr)
	}
}
