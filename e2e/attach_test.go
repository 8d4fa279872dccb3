package e2e

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/lab"
	"github.com/rendezvous-core/rendezvous/roamsim"
	"github.com/rendezvous-core/rendezvous/topology"
)

// visitedNetwork is where roamsim's MMEs, SGWs and SGSNs live in e2e tests:
// outside every region's lab address (DESIGN.md §5).
var visitedNetwork = netip.MustParseAddr("127.0.6.1")

// labDevices loads the lab's subscribers as roamsim devices roaming in the
// given countries (round-robin).
func labDevices(t *testing.T, l *lab.Lab, countries []roamsim.Country) []roamsim.Device {
	t.Helper()
	f, err := os.Open(l.SubscribersFile())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	devs, err := roamsim.LoadSubscribersCSV(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := roamsim.AssignCountries(devs, countries); err != nil {
		t.Fatal(err)
	}
	return devs
}

func hssAddrs(l *lab.Lab) []string {
	var out []string
	for _, n := range l.Federation().Deployment.Nodes {
		if n.Diameter.IsValid() {
			out = append(out, n.Diameter.String())
		}
	}
	return out
}

// TestLabNearestRegionEveryContinent: devices roaming in 30 countries on
// every inhabited continent attach through the real S6a, S8 and GTP-U of the
// lab, each lands on the region topology ranks nearest to its visited
// country, and passes data to the internet namespace and back.
func TestLabNearestRegionEveryContinent(t *testing.T) {
	countries := roamsim.DefaultCountries()
	l := startLab(t, 2*len(countries))
	devs := labDevices(t, l, countries)
	sim, err := roamsim.New(roamsim.Config{
		Devices:    devs,
		Countries:  countries,
		HSS:        hssAddrs(l),
		GTPC:       netip.AddrPortFrom(visitedNetwork, 2123),
		Target:     l.Internet().Target,
		Probes:     3,
		Mode:       roamsim.OneShot,
		AttachRate: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rep, err := sim.Run(ctx)
	if err != nil {
		t.Fatalf("roamsim: %v", err)
	}
	continents := map[string]bool{}
	for _, c := range countries {
		continents[c.Continent] = true
	}
	if len(continents) < 6 {
		t.Fatalf("only %d continents in the country table", len(continents))
	}
	if len(rep.Devices) != len(devs) {
		t.Fatalf("report has %d devices, want %d", len(rep.Devices), len(devs))
	}
	served := map[topology.RegionID]int{}
	for _, d := range rep.Devices {
		served[d.Region]++
		if d.FailureCount > 0 || d.Region == "" {
			t.Errorf("%s in %s: not attached: %+v", d.IMSI, d.Country, d.Failures)
			continue
		}
		plmn, err := topology.ParsePLMN(d.Visited)
		if err != nil {
			t.Fatalf("%s: visited %q: %v", d.IMSI, d.Visited, err)
		}
		rank, err := topology.Rank(plmn.MCC)
		if err != nil {
			t.Fatal(err)
		}
		if d.Region != rank[0].Region {
			t.Errorf("%s in %s served by %s, nearest is %s", d.IMSI, d.Country, d.Region, rank[0].Region)
		}
		if d.Data == nil || d.Data.Received == 0 {
			t.Errorf("%s in %s via %s: no data came back: %+v", d.IMSI, d.Country, d.Region, d.Data)
		}
	}
	for _, r := range topology.Regions() {
		if served[r.ID] == 0 {
			t.Errorf("no device was served by %s: %v", r.ID, served)
		}
	}
	if rep.Totals.Received == 0 {
		t.Errorf("no data came back at all: %+v", rep.Totals)
	}
	if t.Failed() {
		_ = rep.WriteTable(os.Stderr)
	}
}
