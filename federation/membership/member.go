package membership

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/rendezvous-core/rendezvous/topology"
)

// State is a member's health as this node's gossip view shows it.
type State uint8

// Member states (memberlist's NodeStateType, named).
const (
	StateAlive   State = iota + 1
	StateSuspect       // failed a probe; may still refute (Lifeguard). Not reported by memberlist v0.7.0 race-free: see Members
	StateDead          // suspicion timed out
	StateLeft          // left gracefully
)

func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Role is what a node does in the federation.
type Role string

// Roles. A witness runs only gossip and raft (the 5th voter at a 5th site,
// notes/federation.md §0.1); it belongs to no region's health.
const (
	RoleCore    Role = "core"
	RoleWitness Role = "witness"
)

// MetaMaxSize is memberlist's limit on node metadata (net.go MetaMaxSize).
const MetaMaxSize = 512

// Meta is a node's gossiped metadata. Encoded as compact JSON; it must fit
// in MetaMaxSize bytes, which New checks.
type Meta struct {
	Region  topology.RegionID `json:"r,omitempty"`
	Role    Role              `json:"o"`
	Version string            `json:"v,omitempty"`
	// Addrs are the node's service addresses by name ("raft", "api",
	// "diameter", "gtpc", …).
	Addrs map[string]string `json:"a,omitempty"`
	// Load is a 0–1000 load figure (per mille), updated with SetLoad.
	Load uint32 `json:"l,omitempty"`
	// RTT is the node's median RTT to each region in µs (its row of the
	// region×region matrix), dropped first when the metadata is too big.
	RTT map[topology.RegionID]uint32 `json:"t,omitempty"`
}

func (m Meta) encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("membership: encode meta: %w", err)
	}
	if len(b) > MetaMaxSize {
		return nil, fmt.Errorf("membership: meta is %d bytes, limit %d", len(b), MetaMaxSize)
	}
	return b, nil
}

func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("membership: decode meta %q: %w", b, err)
	}
	return m, nil
}

// Member is one node of the gossip pool as this node sees it.
type Member struct {
	Name   string
	Region topology.RegionID // empty for a witness
	Role   Role
	State  State
	Addr   netip.AddrPort // gossip address
	Meta   Meta
}
