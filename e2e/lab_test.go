package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/consensus"
	"github.com/rendezvous-core/rendezvous/federation/membership"
	"github.com/rendezvous-core/rendezvous/federation/steering"
	"github.com/rendezvous-core/rendezvous/lab"
	"github.com/rendezvous-core/rendezvous/region/opapi"
	"github.com/rendezvous-core/rendezvous/topology"
)

// requireRoot skips without root, or fails when RDV_REQUIRE_ALL=1 (CI).
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("RDV_REQUIRE_ALL") == "1" {
		t.Fatal("this test needs root (TUN devices, namespaces, nftables) and RDV_REQUIRE_ALL=1 forbids skipping")
	}
	t.Skip("needs root: TUN devices, network namespaces, nftables")
}

// startLab starts the in-process lab with fast timings: the same code and
// sockets as `rendezvous lab`, scaled down so that failure detection takes
// seconds (membership.TestProfile, consensus.TestTiming).
func startLab(t *testing.T, subscribers int) *lab.Lab {
	t.Helper()
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pol := consensus.PolicyConfig{ConfirmWindow: time.Second, HealthyWindow: 3 * time.Second, RetryAfter: 2 * time.Second}
	l, err := lab.Start(ctx, lab.Config{
		StateDir:      t.TempDir(),
		Subscribers:   subscribers,
		GossipProfile: membership.TestProfile(),
		RaftTiming:    consensus.TestTiming(),
		Policy:        pol,
		RehomeRate:    50,
	})
	if err != nil {
		t.Fatalf("start lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	if _, err := l.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return l
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLabRegionFailure kills a region's only node: the raft leader commits
// its failure, every surviving node applies the same table, and the
// operator API shows it.
func TestLabRegionFailure(t *testing.T) {
	l := startLab(t, 20)
	victim := "de"
	if leader, _ := l.Nodes()[0].Consensus().Leader(); leader == victim {
		victim = "au" // killing the leader's region is its own test
	}
	victimRegion := topology.RegionID(map[string]string{"de": "DE", "au": "AU"}[victim])
	if err := l.Kill(victim); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 45*time.Second, victim+" failed on every node", func() bool {
		for _, n := range l.Nodes() {
			if n.Consensus().Table().Regions[victimRegion].State != steering.StateFailed {
				return false
			}
		}
		return true
	})
	want := l.Nodes()[0].Consensus().Table()
	for _, n := range l.Nodes()[1:] {
		got := n.Consensus().Table()
		for r, row := range want.Regions {
			if g := got.Regions[r]; g.State != row.State || g.Epoch != row.Epoch {
				t.Errorf("%s: region %s = %v@%d, %s has %v@%d", n.Name(), r, g.State, g.Epoch, l.Nodes()[0].Name(), row.State, row.Epoch)
			}
		}
	}
	if len(want.Regions[victimRegion].FailoverTo) == 0 {
		t.Errorf("failed region %s has no failover order", victimRegion)
	}
	c := &opapi.Client{Base: "http://" + l.Nodes()[0].APIAddr().String(), Token: l.Token()}
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range st.Table {
		if r.Region == victimRegion {
			found = r.State == "failed"
		}
	}
	if !found {
		t.Errorf("API status table does not show %s failed: %+v", victimRegion, st.Table)
	}
}

// TestLabOperatorDrainRestore drives drain and restore through the API of a
// node that is not the leader: the action is forwarded and committed.
func TestLabOperatorDrainRestore(t *testing.T) {
	l := startLab(t, 10)
	leader, _ := l.Nodes()[0].Consensus().Leader()
	var follower string
	for _, n := range l.Nodes() {
		if n.Name() != leader && n.APIAddr().IsValid() {
			follower = "http://" + n.APIAddr().String()
			break
		}
	}
	c := &opapi.Client{Base: follower, Token: l.Token()}
	ctx := context.Background()
	res, err := c.Act(ctx, topology.JP, opapi.Drain)
	if err != nil {
		t.Fatal(err)
	}
	if res.State != "draining" {
		t.Fatalf("drain JP = %+v", res)
	}
	waitFor(t, 10*time.Second, "JP draining everywhere", func() bool {
		for _, n := range l.Nodes() {
			if n.Consensus().Table().Regions[topology.JP].State != steering.StateDraining {
				return false
			}
		}
		return true
	})
	if res, err = c.Act(ctx, topology.JP, opapi.Restore); err != nil || res.State != "active" {
		t.Fatalf("restore JP = %+v, %v", res, err)
	}
}

func topologyRegion(s string) topology.RegionID { return topology.RegionID(s) }
