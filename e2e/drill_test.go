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
// session is lost in the other regions; restore it (restart, restore,
// rebalance) → they move back, and every device ends at its nearest healthy
// region.
func TestDrillKillRegion(t *testing.T) {
	l := startLab(t, 60)
	rec := lab.NewRecorder()
	startDevices(t, l, rec)
	victim := "DE"
	if leader, _ := l.Nodes()[0].Consensus().Leader(); leader == "de" {
		victim = "AU"
	}
	rep := runDrill(t, l, rec, "kill "+victim+" at 500ms; restore "+victim+" at 12s", 15*time.Second)
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
	if r := rep.Steps[1]; r.NotRecovered != 0 || r.Affected != s.Affected {
		t.Errorf("restore: %d of %d devices did not move back to %s (%d had left)", r.NotRecovered, r.Affected, victim, s.Affected)
	}
	if rep.NotNearestAfter != 0 {
		t.Errorf("%d devices are not at their nearest healthy region afterwards", rep.NotNearestAfter)
	}
}

// TestDrillPartitionRegion: a region cut off from the others decides
// nothing (its own table is unchanged while it is alone), the majority fails
// it over, and after the heal the policy restores it.
func TestDrillPartitionRegion(t *testing.T) {
	l := startLab(t, 20)
	rec := lab.NewRecorder()
	startDevices(t, l, rec)
	victim, node := "AU", "au"
	if leader, _ := l.Nodes()[0].Consensus().Leader(); leader == "au" {
		victim, node = "DE", "de"
	}
	rep := runDrill(t, l, rec, "partition "+victim+" at 300ms for 8s", 2*time.Second)
	s := rep.Steps[0]
	if s.MinorityDecided {
		t.Errorf("the partitioned %s changed its own table while alone", victim)
	}
	if s.DecidedMS < 0 {
		t.Errorf("the majority never failed %s over", victim)
	}
	if s.SessionsLostElsewhere != 0 {
		t.Errorf("%d sessions lost in regions that were not faulted", s.SessionsLostElsewhere)
	}
	n, _ := l.Node(node)
	waitFor(t, 30*time.Second, victim+" restored by policy on every node after the heal", func() bool {
		for _, m := range l.Nodes() {
			if m.Consensus().Table().Regions[topologyRegion(victim)].State.String() != "active" {
				return false
			}
		}
		return n.Consensus().Table().Regions[topologyRegion(victim)].State.String() == "active"
	})
}

// TestDrillNodeRestart: a region's node restarts quickly (no failover):
// the SGWs see its new GTP restart counter through Echo, drop the stale
// sessions and re-attach, and the devices pass data again.
func TestDrillNodeRestart(t *testing.T) {
	l := startLab(t, 20)
	rec := lab.NewRecorder()
	d, err := l.StartDevices(context.Background(), lab.DevicesConfig{Mode: roamsim.Continuous, OnEvent: rec.OnEvent,
		AttachRate: -1, EchoInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = d.Stop() })
	waitFor(t, 60*time.Second, "every device attached", func() bool {
		s := d.Snapshot().Totals
		return s.Devices > 0 && s.Attached == s.Devices
	})
	victim := "jp"
	if leader, _ := l.Nodes()[0].Consensus().Leader(); leader == victim {
		victim = "us"
	}
	before := d.Snapshot().Counters.PeerRestarts
	if err := l.Kill(victim); err != nil {
		t.Fatal(err)
	}
	if err := l.StartNode(context.Background(), victim, l.BreakoutConfig()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the SGWs to see "+victim+"'s new restart counter", func() bool {
		return d.Snapshot().Counters.PeerRestarts > before
	})
	waitFor(t, 30*time.Second, "every device attached again", func() bool {
		s := d.Snapshot().Totals
		return s.Attached == s.Devices
	})
}

// TestDrillKillLeaderRegion: kill the node of the raft leader's region → a
// new leader is elected, it commits the old leader's region failed, and
// that region's devices recover elsewhere.
func TestDrillKillLeaderRegion(t *testing.T) {
	l := startLab(t, 40)
	rec := lab.NewRecorder()
	startDevices(t, l, rec)
	leader, _ := l.Nodes()[0].Consensus().Leader()
	var region string
	for _, n := range l.Federation().Deployment.Nodes {
		if n.Name == leader {
			region = string(n.Region)
		}
	}
	if region == "" {
		// The witness leads: move leadership is not ours to force; kill it
		// and check a core node takes over, then kill that one's region.
		if err := l.Kill(leader); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "a new leader", func() bool {
			id, _ := l.Nodes()[0].Consensus().Leader()
			return id != "" && id != leader
		})
		leader, _ = l.Nodes()[0].Consensus().Leader()
		for _, n := range l.Federation().Deployment.Nodes {
			if n.Name == leader {
				region = string(n.Region)
			}
		}
	}
	rep := runDrill(t, l, rec, "kill "+region+" at 300ms", 20*time.Second)
	s := rep.Steps[0]
	if s.DecidedMS < 0 {
		t.Fatalf("the leader's region %s was never failed over by a new leader", region)
	}
	newLeader, _ := l.Nodes()[0].Consensus().Leader()
	if newLeader == "" || newLeader == leader {
		t.Fatalf("leader after the kill = %q (was %q)", newLeader, leader)
	}
	if s.NotRecovered != 0 {
		t.Errorf("%d of %d devices of %s did not recover", s.NotRecovered, s.Affected, region)
	}
	if s.SessionsLostElsewhere != 0 {
		t.Errorf("%d sessions lost in regions that were not faulted", s.SessionsLostElsewhere)
	}
}
