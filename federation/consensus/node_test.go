package consensus_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/consensus"
	"github.com/rendezvous-core/rendezvous/federation/membership"
	"github.com/rendezvous-core/rendezvous/federation/membership/faultnet"
	"github.com/rendezvous-core/rendezvous/federation/steering"
	"github.com/rendezvous-core/rendezvous/topology"
)

// staticView is a scripted membership view: every region's node alive.
type staticView struct{}

func (staticView) Members() []membership.Member {
	var out []membership.Member
	for _, s := range five {
		role := membership.RoleCore
		if s.region == "" {
			role = membership.RoleWitness
		}
		out = append(out, membership.Member{Name: s.name, Region: s.region, Role: role, State: membership.StateAlive})
	}
	return out
}

func (staticView) RTTMatrix() steering.Matrix { return nil }

// TestSingleVoterInMemoryAndNonvoter: the in-memory store path, operator
// commands, Subscribe, Stats, and a non-voter that joins with AddNonvoter
// and applies the same table.
func TestSingleVoterInMemoryAndNonvoter(t *testing.T) {
	a := netip.MustParseAddr("127.0.40.250")
	b := netip.MustParseAddr("127.0.40.251")
	addrA := netip.AddrPortFrom(a, raftPort).String()
	n1, err := consensus.New(consensus.Config{
		ID: "jp1", Regions: regions, BindAddr: addrA,
		Servers: []consensus.Server{{ID: "jp1", Address: addrA, Voter: true}}, Bootstrap: true,
		Timing: consensus.TestTiming(), View: staticView{}, Logger: logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n1.Close()
	ch, cancel := n1.Subscribe()
	defer cancel()
	if first := <-ch; first.Regions[topology.AU].State != steering.StateActive {
		t.Fatalf("initial table %+v", first)
	}
	waitFor(t, "jp1 leads", 30*time.Second, n1.IsLeader)

	row, err := n1.Drain(t.Context(), topology.AU, "maintenance")
	if err != nil || row.State != steering.StateDraining || row.Epoch != 1 || row.Reason != "maintenance" || row.Origin != consensus.OriginOperator {
		t.Fatalf("Drain: %+v %v", row, err)
	}
	if len(row.FailoverTo) != 3 || row.FailoverTo[0] == topology.AU {
		t.Fatalf("drain failover order %v", row.FailoverTo)
	}
	if _, err := n1.Drain(t.Context(), topology.AU, ""); !errors.Is(err, consensus.ErrTransition) {
		t.Fatalf("second Drain: %v", err)
	}
	if _, err := n1.Rebalance(t.Context(), topology.AU, ""); !errors.Is(err, consensus.ErrTransition) {
		t.Fatalf("Rebalance of a draining region: %v", err)
	}
	if _, err := n1.Restore(t.Context(), topology.AU, ""); err != nil {
		t.Fatal(err)
	}
	if row, err := n1.Rebalance(t.Context(), topology.AU, ""); err != nil || row.Rebalances != 1 {
		t.Fatalf("Rebalance: %+v %v", row, err)
	}
	if _, err := n1.Failover(t.Context(), "SG", ""); !errors.Is(err, consensus.ErrUnknownRegion) {
		t.Fatalf("Failover SG: %v", err)
	}
	waitFor(t, "subscriber sees the rebalance", 10*time.Second, func() bool {
		select {
		case tab := <-ch:
			return tab.Regions[topology.AU].Rebalances == 1
		default:
			return false
		}
	})

	// A further node of a region joins as a non-voter.
	sl, err := faultnet.New(1).Listen(b, raftPort)
	if err != nil {
		t.Fatal(err)
	}
	n2, err := consensus.New(consensus.Config{
		ID: "jp2", Regions: regions, StreamLayer: sl, Timing: consensus.TestTiming(), View: staticView{}, Logger: logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if err := n1.AddNonvoter(t.Context(), "jp2", n2.Addr()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "non-voter applies the table", 30*time.Second, func() bool {
		return n2.Table().Regions[topology.AU].Rebalances == 1
	})
	st := n1.Stats()
	if st.State != "Leader" || !st.Leading || len(st.Servers) != 2 || st.Servers[1].Voter {
		t.Fatalf("stats %+v", st)
	}
	if _, err := n2.Drain(t.Context(), topology.US, ""); !errors.Is(err, consensus.ErrNotLeader) {
		t.Fatalf("non-voter Drain: %v", err)
	}
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n2.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
}

func TestConfigValidation(t *testing.T) {
	srv := func(n int) []consensus.Server {
		var s []consensus.Server
		for i := 0; i < n; i++ {
			s = append(s, consensus.Server{ID: five[i].name, Address: "127.0.40.1:1", Voter: true})
		}
		return s
	}
	for name, cfg := range map[string]consensus.Config{
		"no ID":            {Regions: regions, BindAddr: "127.0.40.252:0", View: staticView{}},
		"no regions":       {ID: "jp1", BindAddr: "127.0.40.252:0", View: staticView{}},
		"no view":          {ID: "jp1", Regions: regions, BindAddr: "127.0.40.252:0"},
		"4 voters":         {ID: "jp1", Regions: regions, BindAddr: "127.0.40.252:0", View: staticView{}, Bootstrap: true, Servers: srv(4)},
		"self not in list": {ID: "zz", Regions: regions, BindAddr: "127.0.40.252:0", View: staticView{}, Bootstrap: true, Servers: srv(5)},
	} {
		if n, err := consensus.New(cfg); err == nil {
			n.Close()
			t.Errorf("%s: accepted", name)
		}
	}
}
