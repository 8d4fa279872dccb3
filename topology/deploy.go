package topology

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Role is what a node runs.
type Role string

const (
	// RoleCore runs the whole regional core: HSS, PGW/GGSN, breakout,
	// gossip and raft.
	RoleCore Role = "core"
	// RoleWitness runs only gossip and raft: the fifth raft voter that
	// keeps a 2|2 split of the four regions from deadlocking (DESIGN.md §4).
	RoleWitness Role = "witness"
)

// Node is one process of the federation and the addresses it listens on.
// A zero AddrPort means the node does not serve that interface.
type Node struct {
	Name string
	// Region is the region the node serves; empty for a region-less witness.
	Region RegionID
	Role   Role

	Diameter netip.AddrPort // S6a/S6d, TCP (TS 29.272; IANA port 3868)
	GTPC     netip.AddrPort // GTPv1-C and GTPv2-C, UDP (TS 29.274; port 2123)
	GTPU     netip.AddrPort // GTP-U, UDP (TS 29.281; port 2152)
	Gossip   netip.AddrPort // memberlist, TCP and UDP
	Raft     netip.AddrPort // raft transport, TCP
	API      netip.AddrPort // operator API, HTTPS
}

// Endpoint names a node's interface; the names are those of the federation file.
type Endpoint string

// The endpoints of a node, in the order Endpoints returns them.
const (
	EndpointDiameter Endpoint = "diameter"
	EndpointGTPC     Endpoint = "gtpc"
	EndpointGTPU     Endpoint = "gtpu"
	EndpointGossip   Endpoint = "gossip"
	EndpointRaft     Endpoint = "raft"
	EndpointAPI      Endpoint = "api"
)

// NodeEndpoint is one interface of a node and its address.
type NodeEndpoint struct {
	Name Endpoint
	Addr netip.AddrPort
}

// Endpoints returns the node's interfaces in a fixed order, zero ones included.
func (n Node) Endpoints() []NodeEndpoint {
	return []NodeEndpoint{
		{EndpointDiameter, n.Diameter}, {EndpointGTPC, n.GTPC}, {EndpointGTPU, n.GTPU},
		{EndpointGossip, n.Gossip}, {EndpointRaft, n.Raft}, {EndpointAPI, n.API},
	}
}

// required reports whether a node of role r must serve endpoint e: a core
// serves everything; a witness only gossip and raft.
func (r Role) required(e Endpoint) bool {
	return r == RoleCore || e == EndpointGossip || e == EndpointRaft
}

// MaxIND is the largest IND value: TS 33.102 Annex C suggests a 5-bit IND
// (a = 2^5 = 32 slots in the SQN array) in the recommended profile.
const MaxIND = 31

// INDSlice is the inclusive range of IND values a region's HSS uses when it
// allocates SQNs (SQN = SEQ || IND, TS 33.102 Annex C.1.2): disjoint slices let every
// region allocate without cross-region writes.
type INDSlice struct{ First, Last uint8 }

// DefaultINDSlice returns the slice of DESIGN.md §2: JP 0–7, US 8–15,
// DE 16–23, AU 24–31.
func DefaultINDSlice(id RegionID) (INDSlice, bool) {
	i := regionIndex(id)
	if i < 0 {
		return INDSlice{}, false
	}
	return INDSlice{First: uint8(8 * i), Last: uint8(8*i + 7)}, true
}

// String returns "First-Last".
func (s INDSlice) String() string { return fmt.Sprintf("%d-%d", s.First, s.Last) }

// Contains reports whether ind is in the slice.
func (s INDSlice) Contains(ind uint8) bool { return s.First <= ind && ind <= s.Last }

// Overlaps reports whether the slices share an IND value.
func (s INDSlice) Overlaps(o INDSlice) bool { return s.First <= o.Last && o.First <= s.Last }

// Validate checks First ≤ Last ≤ MaxIND.
func (s INDSlice) Validate() error {
	if s.First > s.Last {
		return fmt.Errorf("IND slice %s: first > last", s)
	}
	if s.Last > MaxIND {
		return fmt.Errorf("IND slice %s: IND is 5 bits, max %d (TS 33.102 Annex C)", s, MaxIND)
	}
	return nil
}

// AnyAPN is the APN of a pool that serves every APN.
const AnyAPN = "*"

// Pool is a UE address pool of a region for one APN (or AnyAPN).
type Pool struct {
	APN    string
	Prefix netip.Prefix
}

// Site is a region as deployed: its IND slice, UE pools and PGW name.
type Site struct {
	Region RegionID
	IND    INDSlice
	Pools  []Pool
	// PGWHost is the Diameter/DNS host name of the region's PGW, named in
	// MIP6-Agent-Info of ULA's APN-Configuration (TS 29.272); optional.
	PGWHost string
}

// DiameterPeer allows Diameter peers by Origin-Realm and, optionally,
// Origin-Host (RFC 6733 §6.3, §6.4). Realm "*" allows every realm; an
// empty Host allows every host of the realm.
type DiameterPeer struct{ Host, Realm string }

// Peers are the visited-network peers allowed to talk to the federation.
type Peers struct {
	// Prefixes are the source addresses allowed for Diameter and GTP.
	Prefixes []netip.Prefix
	Diameter []DiameterPeer
}

// AllowsAddr reports whether a peer address is in one of the prefixes.
func (p Peers) AllowsAddr(a netip.Addr) bool {
	a = a.Unmap()
	for _, pf := range p.Prefixes {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

// AllowsDiameter reports whether a Diameter peer is allowed. Host and realm
// names compare case-insensitively (RFC 6733 §4.3.1 DiameterIdentity is an FQDN).
func (p Peers) AllowsDiameter(host, realm string) bool {
	for _, d := range p.Diameter {
		if (d.Realm == "*" || strings.EqualFold(d.Realm, realm)) && (d.Host == "" || strings.EqualFold(d.Host, host)) {
			return true
		}
	}
	return false
}

// Deployment is a whole federation: its sites, nodes and allowed peers.
type Deployment struct {
	Sites []Site
	Nodes []Node
	Peers Peers
}

// Site returns the site of region id.
func (d *Deployment) Site(id RegionID) (Site, bool) {
	for _, s := range d.Sites {
		if s.Region == id {
			return s, true
		}
	}
	return Site{}, false
}

// Node returns the node called name.
func (d *Deployment) Node(name string) (Node, bool) {
	for _, n := range d.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// FieldError is one problem of a Deployment. Field is a path in the terms
// of the federation file, e.g. "regions[1].pools[0].prefix" or
// "nodes[2].gtpc", so that a parser can point at the line.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return "topology: " + e.Field + ": " + e.Msg }

// Validate checks the deployment and returns every problem found, joined
// (errors.Join of *FieldError, in a fixed order), or nil.
func (d *Deployment) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}

	if len(d.Sites) == 0 {
		add("regions", "no region")
	}
	if len(d.Nodes) == 0 {
		add("nodes", "no node")
	}

	// Sites: known regions, no duplicates, disjoint IND slices, pools.
	siteAt := map[RegionID]int{}
	type poolRef struct {
		field  string
		prefix netip.Prefix
	}
	var pools []poolRef
	for i, s := range d.Sites {
		f := fmt.Sprintf("regions[%d]", i)
		if _, ok := LookupRegion(s.Region); !ok {
			add(f+".id", "unknown region %q (want JP, US, DE or AU)", string(s.Region))
		} else if j, dup := siteAt[s.Region]; dup {
			add(f+".id", "region %s already defined at regions[%d]", s.Region, j)
		} else {
			siteAt[s.Region] = i
		}
		if err := s.IND.Validate(); err != nil {
			add(f+".ind", "%v", err)
		} else {
			for j := 0; j < i; j++ {
				if o := d.Sites[j].IND; o.Validate() == nil && s.IND.Overlaps(o) {
					add(f+".ind", "IND slice %s overlaps regions[%d] (%s) %s: SQN slices must be disjoint (TS 33.102 C.1.2)", s.IND, j, d.Sites[j].Region, o)
				}
			}
		}
		if len(s.Pools) == 0 {
			add(f+".pools", "no UE address pool")
		}
		for k, p := range s.Pools {
			pf := fmt.Sprintf("%s.pools[%d]", f, k)
			if p.APN == "" {
				add(pf+".apn", "empty APN (use %q for any)", AnyAPN)
			}
			switch {
			case !p.Prefix.IsValid():
				add(pf+".prefix", "missing or invalid prefix")
			case p.Prefix != p.Prefix.Masked():
				add(pf+".prefix", "prefix %s has host bits set (want %s)", p.Prefix, p.Prefix.Masked())
			default:
				// Breakout finds a session by UE address (DESIGN.md §2,
				// user data), so no two pools may share an address, even
				// in different regions or APNs.
				for _, o := range pools {
					if o.prefix.Overlaps(p.Prefix) {
						add(pf+".prefix", "pool %s overlaps %s (%s)", p.Prefix, o.prefix, o.field)
					}
				}
				pools = append(pools, poolRef{pf + ".prefix", p.Prefix})
			}
		}
	}

	// Nodes: unique names, known roles and regions, endpoints, no address:port twice.
	nameAt := map[string]int{}
	addrAt := map[netip.AddrPort]string{}
	cores := map[RegionID]int{}
	for i, n := range d.Nodes {
		f := fmt.Sprintf("nodes[%d]", i)
		if n.Name == "" {
			add(f+".name", "missing node name")
		} else if j, dup := nameAt[n.Name]; dup {
			add(f+".name", "duplicate node name %q (also nodes[%d])", n.Name, j)
		} else {
			nameAt[n.Name] = i
		}
		switch n.Role {
		case RoleCore:
			if n.Region == "" {
				add(f+".region", "a core node needs a region")
			}
		case RoleWitness:
		default:
			add(f+".role", "unknown role %q (want core or witness)", string(n.Role))
		}
		if n.Region != "" {
			if _, ok := siteAt[n.Region]; !ok {
				add(f+".region", "unknown region %q (not in regions)", string(n.Region))
			} else if n.Role == RoleCore {
				cores[n.Region]++
			}
		}
		for _, e := range n.Endpoints() {
			ef := f + "." + string(e.Name)
			switch {
			case !e.Addr.IsValid():
				if n.Role.required(e.Name) {
					add(ef, "missing %s address", e.Name)
				}
				continue
			case e.Addr.Port() == 0:
				add(ef, "%s: port 0", e.Addr)
				continue
			}
			if other, dup := addrAt[e.Addr]; dup {
				add(ef, "address %s already used by %s", e.Addr, other)
			} else {
				addrAt[e.Addr] = ef
			}
		}
	}
	for i, s := range d.Sites {
		if _, ok := LookupRegion(s.Region); ok && siteAt[s.Region] == i && cores[s.Region] == 0 {
			add(fmt.Sprintf("regions[%d]", i), "region %s has no core node", s.Region)
		}
	}

	for i, p := range d.Peers.Prefixes {
		if !p.IsValid() {
			add(fmt.Sprintf("peers.prefixes[%d]", i), "invalid prefix")
		}
	}
	for i, p := range d.Peers.Diameter {
		if p.Realm == "" {
			add(fmt.Sprintf("peers.diameter[%d].realm", i), "missing realm (use \"*\" for any)")
		}
	}
	return errors.Join(errs...)
}
