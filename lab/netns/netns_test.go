package netns

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/config"
	"github.com/rendezvous-core/rendezvous/roamsim"
	"github.com/rendezvous-core/rendezvous/topology"
)

// The generated federation file is the lab federation on the namespace
// addresses: it parses strictly, has the five nodes at the planned
// addresses on the standard ports, and admits the lab subnet as peers.
func TestFederationYAML(t *testing.T) {
	fed, err := config.Parse("federation.yaml", []byte(federationYAML()))
	if err != nil {
		t.Fatal(err)
	}
	lab := config.Lab()
	if len(fed.Deployment.Nodes) != len(lab.Deployment.Nodes) {
		t.Fatalf("%d nodes, want %d", len(fed.Deployment.Nodes), len(lab.Deployment.Nodes))
	}
	for i, n := range fed.Deployment.Nodes {
		want := lab.Deployment.Nodes[i]
		m, ok := nodeMember(n.Name)
		if !ok || n.Name != want.Name || n.Region != want.Region || n.Role != want.Role {
			t.Errorf("node %d = %s/%s/%v, want %s/%s/%v", i, n.Name, n.Region, n.Role, want.Name, want.Region, want.Role)
			continue
		}
		if n.Gossip != netip.AddrPortFrom(m.addr, want.Gossip.Port()) || n.API != netip.AddrPortFrom(m.addr, want.API.Port()) {
			t.Errorf("%s: gossip %v api %v, want %v ports %d/%d", n.Name, n.Gossip, n.API, m.addr, want.Gossip.Port(), want.API.Port())
		}
		if n.Role == topology.RoleCore && n.Diameter != netip.AddrPortFrom(m.addr, want.Diameter.Port()) {
			t.Errorf("%s: diameter %v", n.Name, n.Diameter)
		}
	}
	for i, s := range fed.Deployment.Sites {
		if w := lab.Deployment.Sites[i]; s.Region != w.Region || s.IND != w.IND || len(s.Pools) != 1 || s.Pools[0].Prefix != w.Pools[0].Prefix {
			t.Errorf("site %d = %+v, want %+v", i, s, w)
		}
	}
	if p := fed.Deployment.Peers.Prefixes; len(p) != 1 || p[0] != subnet {
		t.Errorf("peers %v, want %v", p, subnet)
	}
}

// Every member's address is on the subnet and unique, and every link name
// fits IFNAMSIZ.
func TestPlan(t *testing.T) {
	seen := map[netip.Addr]string{hostAddr: "host"}
	for _, m := range allMembers() {
		if !subnet.Contains(m.addr) {
			t.Errorf("%s: %v not in %v", m.name, m.addr, subnet)
		}
		if o, dup := seen[m.addr]; dup {
			t.Errorf("%s and %s share %v", m.name, o, m.addr)
		}
		seen[m.addr] = m.name
		if len(m.fabricLink()) > 15 {
			t.Errorf("link %q longer than 15 bytes", m.fabricLink())
		}
	}
	rules := partitionRules(nodeMembers[0])
	if strings.Contains(rules, nodeMembers[0].addr.String()) || !strings.Contains(rules, nodeMembers[4].addr.String()) {
		t.Errorf("partition rules of %s:\n%s", nodeMembers[0].name, rules)
	}
}

// A first-data event that overtakes its attach event still counts.
func TestDeviceStates(t *testing.T) {
	t0 := time.Unix(1000, 0)
	pgwA, pgwB := netip.MustParseAddr("198.19.0.11"), netip.MustParseAddr("198.19.0.12")
	ev := func(imsi string, k roamsim.EventKind, at time.Duration, pgw netip.Addr, region topology.RegionID, lat time.Duration) roamsim.Event {
		return roamsim.Event{Time: t0.Add(at), Kind: k, IMSI: topology.IMSI(imsi), Country: "JP", Region: region, PGW: pgw, Latency: lat}
	}
	evs := []roamsim.Event{
		// 1: in order.
		ev("1", roamsim.EventAttached, 0, pgwA, topology.JP, 100*time.Millisecond),
		ev("1", roamsim.EventFirstData, 10*time.Millisecond, pgwA, topology.JP, 0),
		// 2: data overtakes the attach event.
		ev("2", roamsim.EventFirstData, 50*time.Millisecond, pgwA, topology.JP, 0),
		ev("2", roamsim.EventAttached, 51*time.Millisecond, pgwA, topology.JP, 100*time.Millisecond),
		// 3: old data from another PGW, then cancelled and re-attached: no data yet.
		ev("3", roamsim.EventAttached, 0, pgwB, topology.US, 100*time.Millisecond),
		ev("3", roamsim.EventFirstData, 10*time.Millisecond, pgwB, topology.US, 0),
		ev("3", roamsim.EventCancelled, time.Second, pgwB, topology.US, 0),
		ev("3", roamsim.EventAttached, 2*time.Second, pgwA, topology.JP, 100*time.Millisecond),
	}
	got := DeviceStates(evs)
	want := map[topology.IMSI]uint64{"1": 1, "2": 1, "3": 0}
	if len(got) != 3 {
		t.Fatalf("%d rows, want 3", len(got))
	}
	for _, r := range got {
		if r.State != "attached" || r.Data == nil || r.Data.Received != want[r.IMSI] {
			t.Errorf("%s: state %s data %+v, want attached with %d", r.IMSI, r.State, r.Data, want[r.IMSI])
		}
		if r.Visited == "" {
			t.Errorf("%s: no visited PLMN", r.IMSI)
		}
	}
}
