package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/lab"
	"github.com/rendezvous-core/rendezvous/roamsim"
)

// startDevices runs the lab's subscribers as continuously attached devices
// and waits until every one of them is attached.
func startDevices(t *testing.T, l *lab.Lab, rec *lab.Recorder) *lab.Devices {
	t.Helper()
	d, err := l.StartDevices(context.Background(), lab.DevicesConfig{Mode: roamsim.Continuous, OnEvent: rec.OnEvent, AttachRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = d.Stop() })
	waitFor(t, 60*time.Second, "every device attached", func() bool {
		s := d.Snapshot()
		return s.Totals.Devices > 0 && s.Totals.Attached == s.Totals.Devices && s.Totals.Received > 0
	})
	return d
}

func runDrill(t *testing.T, l *lab.Lab, rec *lab.Recorder, spec string, settle time.Duration) lab.DrillReport {
	t.Helper()
	steps, err := lab.ParseDrill(spec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := l.RunDrill(ctx, steps, rec, settle)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.MarshalIndent(rep, "", "  ")
	t.Logf("drill report:\n%s", js)
	return rep
}

// TestDrillKillRegion: kill a region's node while devices from 30 countries
// are attached → the leader fails the region over, its devices are re-homed
// (CLR with Reattach-Required) and pass data at the next-nearest region, no
// session is lost in the other regions, and every device ends at its nearest
// healthy region.
func TestDrillKillRegion(t *testing.T) {
	l := startLab(t, 60)
	rec := lab.NewRecorder()
	startDevices(t, l, rec)
	victim := "DE"
	if leader, _ := l.Nodes()[0].Consensus().Leader(); leader == "de" {
		victim = "AU"
	}
	rep := runDrill(t, l, rec, "kill "+victim+" at 500ms", 20*time.Second)
	s := rep.Steps[0]
	if s.DecidedMS < 0 {
		t.Errorf("the failure of %s was never committed", victim)
	}
	if s.Affected == 0 {
		t.Fatalf("no device was served by %s before the kill", victim)
	}
	if s.NotRecovered != 0 {
		t.Errorf("%d of %d devices of %s did not recover elsewhere", s.NotRecovered, s.Affected, victim)
	}
	if s.SessionsLostElsewhere != 0 {
		t.Errorf("%d sessions lost in regions that were not faulted", s.SessionsLostElsewhere)
	}
	if rep.NotNearestAfter != 0 {
		t.Errorf("%d devices are not at their nearest healthy region afterwards", rep.NotNearestAfter)
	}
}
