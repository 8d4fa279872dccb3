package consensus

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rendezvous-core/rendezvous/federation/membership"
	"github.com/rendezvous-core/rendezvous/federation/steering"
	"github.com/rendezvous-core/rendezvous/topology"
)

// Timing is the raft and policy-loop timing preset.
type Timing struct {
	// HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout and
	// CommitTimeout are raft.Config's fields (notes/federation.md §3.2).
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// MaxRPCsInFlight is NetworkTransportConfig.MaxRPCsInFlight.
	MaxRPCsInFlight int
	// RPCTimeout is the transport's I/O deadline.
	RPCTimeout time.Duration
	// PolicyTick is how often the shell steps the policy.
	PolicyTick time.Duration
	// ApplyTimeout bounds the enqueue of a raft Apply and a Barrier.
	ApplyTimeout time.Duration
}

// WANTiming is the production preset: "tuned-2s" of notes/federation.md
// §0.4/§3.3 — HT=ET=2 s, LL=1 s (LL ≥ R_q + HT/5 + one TCP retransmit
// with a 370 ms margin at R_q 230 ms), CommitTimeout 50 ms (300 ms raised
// follower lag to ~750 ms), MaxRPCsInFlight 16 (follower apply lag p50
// 470→370 ms). Measured: leader re-election median 4.8 s, worst 12.3 s,
// 0 spurious elections.
func WANTiming() Timing {
	return Timing{
		HeartbeatTimeout:   2 * time.Second,
		ElectionTimeout:    2 * time.Second,
		LeaderLeaseTimeout: time.Second,
		CommitTimeout:      50 * time.Millisecond,
		MaxRPCsInFlight:    16,
		RPCTimeout:         10 * time.Second,
		PolicyTick:         250 * time.Millisecond,
		ApplyTimeout:       10 * time.Second,
	}
}

// TestTiming is for loopback tests: raft.DefaultConfig's 1 s/1 s/0.5 s,
// which had 0 spurious elections on loopback (the 200 ms "fast-lan" preset
// had 12 in 5×10 s, notes/federation.md §3.3, so nothing faster).
func TestTiming() Timing {
	return Timing{
		HeartbeatTimeout:   time.Second,
		ElectionTimeout:    time.Second,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      20 * time.Millisecond,
		MaxRPCsInFlight:    16,
		RPCTimeout:         5 * time.Second,
		PolicyTick:         100 * time.Millisecond,
		ApplyTimeout:       5 * time.Second,
	}
}

// Server is one member of the raft configuration.
type Server struct {
	ID      string // node name; also its memberlist name
	Address string // raft "ip:port"
	Voter   bool
}

// View is the membership view the policy observes. *membership.Membership
// implements it. Both methods must be safe for concurrent use and return
// copies.
type View interface {
	Members() []membership.Member
	RTTMatrix() steering.Matrix
}

// Config configures a Node. Fields without a default are required.
type Config struct {
	// ID is this node's name: raft ServerID and memberlist node name.
	ID string
	// Regions of the federation; the table starts with each one active.
	Regions []topology.RegionID
	// BindAddr is the raft TCP address ("ip:port"). Ignored when
	// StreamLayer is set.
	BindAddr string
	// AdvertiseAddr is the address peers dial, when it differs from
	// BindAddr (NAT). Optional.
	AdvertiseAddr string
	// StreamLayer replaces the TCP transport's listener/dialer (mTLS, or a
	// fault-injecting wrapper in tests). Optional; the Node closes it.
	StreamLayer raft.StreamLayer
	// DataDir holds the raft-wal log store and snapshots. Empty keeps
	// everything in memory: tests only (a restarted node forgets its vote
	// and log, which raft's safety argument forbids — Raft paper §5.2/§5.4).
	DataDir string
	// Servers is the initial configuration: one voter per region plus the
	// witness (5 voters, notes/federation.md §0.1). Used when Bootstrap.
	Servers []Server
	// Bootstrap bootstraps the cluster from Servers if DataDir holds no
	// state. Every initial voter does it with the same Servers.
	Bootstrap bool
	// Timing preset; zero value → WANTiming.
	Timing Timing
	// Policy of the leader's loop; Regions defaults to Config.Regions.
	Policy PolicyConfig
	// View is the membership the policy observes. Required.
	View View
	// Now is the clock of the policy loop; default time.Now.
	Now func() time.Time
	// SnapshotRetain is how many snapshots are kept (default 3, as Consul).
	SnapshotRetain int
	// Logger receives the node's and raft's logs; default slog.Default().
	Logger *slog.Logger
	// Registerer receives metrics; nil → a private registry.
	Registerer prometheus.Registerer
}

func (c *Config) validate() error {
	if c.ID == "" {
		return errors.New("consensus: config: empty ID")
	}
	if len(c.Regions) == 0 {
		return errors.New("consensus: config: no regions")
	}
	if c.StreamLayer == nil && c.BindAddr == "" {
		return errors.New("consensus: config: neither BindAddr nor StreamLayer")
	}
	if c.View == nil {
		return errors.New("consensus: config: nil View")
	}
	if c.Bootstrap {
		if len(c.Servers) == 0 {
			return errors.New("consensus: config: Bootstrap without Servers")
		}
		if !slices.ContainsFunc(c.Servers, func(s Server) bool { return s.ID == c.ID }) {
			return fmt.Errorf("consensus: config: Bootstrap: %s is not in Servers", c.ID)
		}
		voters := 0
		for _, s := range c.Servers {
			if s.Voter {
				voters++
			}
		}
		if voters%2 == 0 {
			// 4 voters: a 2|2 split has no leader anywhere (§3.7).
			return fmt.Errorf("consensus: config: %d voters; use an odd number (5 = 4 regions + witness)", voters)
		}
	}
	if c.Timing == (Timing{}) {
		c.Timing = WANTiming()
	}
	if len(c.Policy.Regions) == 0 {
		c.Policy.Regions = slices.Clone(c.Regions)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.SnapshotRetain <= 0 {
		c.SnapshotRetain = 3
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	return nil
}

func (c *Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.ID)
	rc.HeartbeatTimeout = c.Timing.HeartbeatTimeout
	rc.ElectionTimeout = c.Timing.ElectionTimeout
	rc.LeaderLeaseTimeout = c.Timing.LeaderLeaseTimeout
	rc.CommitTimeout = c.Timing.CommitTimeout
	// Consul keeps a removed server running (ShutdownOnRemove=false) so that
	// an operator sees it; we do the same (notes/federation.md §3.1).
	rc.ShutdownOnRemove = false
	return rc
}
