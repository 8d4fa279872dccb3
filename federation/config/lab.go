package config

import (
	"fmt"
	"net/netip"

	"github.com/rendezvous-core/rendezvous/topology"
)

// Lab returns the lab federation of DESIGN.md §5, the embedded default of
// `rendezvous lab`: one core node per region on 127.0.R.1 (JP 1, US 2,
// DE 3, AU 4) and a region-less witness on 127.0.5.1, each on the standard
// ports (Diameter 3868, GTP-C 2123, GTP-U 2152, gossip 7946, raft 7947,
// API 8080); UE pools 10.41–44.0.0/16 for any APN; the default IND slices;
// every peer from 127.0.0.0/8 and every Diameter realm allowed.
// examples/federation.yaml is the same federation as a file (a test checks).
// Each call returns a fresh value.
func Lab() *Federation {
	f := &Federation{Settings: Settings{Realm: "rendezvous.lab", ClusterLabel: "rendezvous-lab"}}
	ap := func(a netip.Addr, e topology.Endpoint) netip.AddrPort { return netip.AddrPortFrom(a, defaultPorts[e]) }
	for i, r := range topology.Regions() {
		ind, _ := topology.DefaultINDSlice(r.ID)
		name := regionNodeName(r.ID)
		f.Deployment.Sites = append(f.Deployment.Sites, topology.Site{
			Region:  r.ID,
			IND:     ind,
			Pools:   []topology.Pool{{APN: topology.AnyAPN, Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(41 + i), 0, 0}), 16)}},
			PGWHost: fmt.Sprintf("pgw.%s.rendezvous.lab", name),
		})
		a := netip.AddrFrom4([4]byte{127, 0, byte(i + 1), 1})
		f.Deployment.Nodes = append(f.Deployment.Nodes, topology.Node{
			Name: name, Region: r.ID, Role: topology.RoleCore,
			Diameter: ap(a, topology.EndpointDiameter), GTPC: ap(a, topology.EndpointGTPC), GTPU: ap(a, topology.EndpointGTPU),
			Gossip: ap(a, topology.EndpointGossip), Raft: ap(a, topology.EndpointRaft), API: ap(a, topology.EndpointAPI),
		})
	}
	w := netip.AddrFrom4([4]byte{127, 0, 5, 1})
	f.Deployment.Nodes = append(f.Deployment.Nodes, topology.Node{
		Name: "witness", Role: topology.RoleWitness,
		Gossip: ap(w, topology.EndpointGossip), Raft: ap(w, topology.EndpointRaft), API: ap(w, topology.EndpointAPI),
	})
	f.Deployment.Peers = topology.Peers{
		Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Diameter: []topology.DiameterPeer{{Realm: "*"}},
	}
	return f
}

// regionNodeName is the lab's node name of a region: "jp", "us", "de", "au".
func regionNodeName(id topology.RegionID) string {
	b := []byte(id)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
