package membership

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rendezvous-core/rendezvous/topology"
)

// Profile is the gossip timing preset (memberlist.Config's fields of the
// same names, notes/federation.md §1.1).
type Profile struct {
	ProbeInterval           time.Duration
	ProbeTimeout            time.Duration
	SuspicionMult           int
	SuspicionMaxTimeoutMult int
	GossipInterval          time.Duration
	GossipNodes             int
	RetransmitMult          int
	TCPTimeout              time.Duration
	PushPullInterval        time.Duration
	GossipToTheDeadTime     time.Duration
	IndirectChecks          int
	AwarenessMaxMultiplier  int
	// RejoinInterval: every so often, seeds not alive in the view are
	// joined again; memberlist never re-merges after a long partition by
	// itself (notes/federation.md §1.8, memberlist#222, serf#605).
	RejoinInterval time.Duration
	// RTTPublishInterval: how often this node re-publishes its per-region
	// RTT row in its metadata (UpdateNode) when it changed.
	RTTPublishInterval time.Duration
}

// WANProfile is the production preset: the "tuned" profile of
// notes/federation.md §1.1–§1.4, for 100–300 ms RTTs. Measured at N=4 on
// an emulated WAN: a crashed node is dead on every survivor in 7.5 s median
// (max 9.0 s); 0 false deaths in 2×180 s at 10 % and 30 % UDP loss.
func WANProfile() Profile {
	return Profile{
		// ProbeInterval > ProbeTimeout + 2×max RTT + margin: the indirect
		// and TCP fallback probes also use it (memberlist#149, #175).
		ProbeInterval: 1500 * time.Millisecond,
		// ≈ p99 RTT × 2–2.5 (the doc says "99-percentile of RTT").
		ProbeTimeout: 750 * time.Millisecond,
		// 4 → k = SuspicionMult−2 = 2 confirmations at N ≥ 4; the WAN
		// default 6 gives k=0 at N ≤ 5, where one lossy observer declares
		// death alone.
		SuspicionMult: 4,
		// Caps a lone, possibly sick observer at 24 s for N ≤ 10.
		SuspicionMaxTimeoutMult: 4,
		GossipInterval:          200 * time.Millisecond,
		GossipNodes:             3, // N−1 at 4 regions: everyone per round
		RetransmitMult:          4,
		TCPTimeout:              5 * time.Second, // ≥ 10× RTT, room for far push/pull
		PushPullInterval:        30 * time.Second,
		GossipToTheDeadTime:     30 * time.Second,
		IndirectChecks:          3,
		AwarenessMaxMultiplier:  8,
		RejoinInterval:          15 * time.Second, // 10–30 s (§1.8); serf uses 30 s
		RTTPublishInterval:      10 * time.Second,
	}
}

// TestProfile is a fast preset for loopback tests (no WAN latency): the
// same shape scaled down so that a crash is detected in ~1–2 s.
// SuspicionMult stays 4 so that confirmations work as in production.
func TestProfile() Profile {
	return Profile{
		ProbeInterval:           200 * time.Millisecond,
		ProbeTimeout:            100 * time.Millisecond,
		SuspicionMult:           4,
		SuspicionMaxTimeoutMult: 4,
		GossipInterval:          50 * time.Millisecond,
		GossipNodes:             3,
		RetransmitMult:          4,
		TCPTimeout:              time.Second,
		PushPullInterval:        5 * time.Second,
		GossipToTheDeadTime:     5 * time.Second,
		IndirectChecks:          3,
		AwarenessMaxMultiplier:  8,
		RejoinInterval:          time.Second,
		RTTPublishInterval:      500 * time.Millisecond,
	}
}

// Config configures a Membership. Fields without a default are required.
type Config struct {
	// Name is the node's unique name (also its raft ID).
	Name string
	// Region of a core node; empty for a witness.
	Region topology.RegionID
	// Role; default RoleCore.
	Role Role
	// Version of the software, gossiped in the metadata.
	Version string
	// Addrs are the node's service addresses gossiped in the metadata
	// ("raft", "api", …).
	Addrs map[string]string
	// BindAddr is the gossip IP; BindPort the UDP+TCP port (0 = any, see
	// Membership.Addr). AdvertiseAddr/AdvertisePort when behind NAT.
	BindAddr      string
	BindPort      int
	AdvertiseAddr string
	AdvertisePort int
	// Seeds are the gossip addresses ("ip:port") of every node of the
	// federation; joined at start and by the re-join loop.
	Seeds []string
	// SecretKey enables AES-GCM gossip encryption: 16, 24 or 32 bytes
	// (notes/federation.md §1.7). Keyring, if set, wins (key rotation).
	SecretKey []byte
	Keyring   *memberlist.Keyring
	// Label is the cluster label ("rv-fed-<env>"): a header on every packet
	// and stream and the GCM additional data; other labels are discarded.
	Label string
	// Profile is the timing preset; zero value → WANProfile.
	Profile Profile
	// RTTSamples is how many RTT samples are kept per peer (median over
	// them); default 20 (notes/federation.md §2 "Recommendation").
	RTTSamples int
	// WrapTransport, when set, wraps the UDP/TCP transport (fault injection
	// in tests).
	WrapTransport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
	// OnInvalidation is called for every registry cache invalidation
	// received from a peer, from one goroutine, in arrival order. It may
	// block briefly; a backlog over 1024 drops (counted) — invalidations
	// are hints, not the source of truth.
	OnInvalidation func(Invalidation)
	// OnChange is called (from the same goroutine) after the view changed:
	// join, leave/death, metadata update. Optional.
	OnChange func()
	// LeaveOnClose makes Close leave gracefully (peers see "left" at once
	// instead of suspecting for seconds). Default false: tests kill.
	LeaveOnClose bool
	// Logger receives the node's and memberlist's logs; default
	// slog.Default().
	Logger *slog.Logger
	// Registerer receives metrics; nil → a private registry.
	Registerer prometheus.Registerer
}

func (c *Config) validate() error {
	if c.Name == "" {
		return errors.New("membership: config: empty Name")
	}
	if c.Role == "" {
		c.Role = RoleCore
	}
	if c.Role != RoleCore && c.Role != RoleWitness {
		return fmt.Errorf("membership: config: unknown role %q", c.Role)
	}
	if c.Role == RoleCore && c.Region == "" {
		return errors.New("membership: config: a core node needs a Region")
	}
	if c.BindAddr == "" {
		return errors.New("membership: config: empty BindAddr")
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("membership: config: SecretKey is %d bytes, want 16, 24 or 32", len(c.SecretKey))
	}
	if c.Profile == (Profile{}) {
		c.Profile = WANProfile()
	}
	if c.Profile.ProbeInterval <= c.Profile.ProbeTimeout {
		return fmt.Errorf("membership: config: ProbeInterval %s must exceed ProbeTimeout %s (memberlist#149)", c.Profile.ProbeInterval, c.Profile.ProbeTimeout)
	}
	if c.RTTSamples <= 0 {
		c.RTTSamples = 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	return nil
}

func (c *Config) memberlistConfig() *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	p := c.Profile
	mc.Name = c.Name
	mc.BindAddr, mc.BindPort = c.BindAddr, c.BindPort
	mc.AdvertiseAddr, mc.AdvertisePort = c.AdvertiseAddr, c.AdvertisePort
	mc.ProbeInterval, mc.ProbeTimeout = p.ProbeInterval, p.ProbeTimeout
	mc.SuspicionMult, mc.SuspicionMaxTimeoutMult = p.SuspicionMult, p.SuspicionMaxTimeoutMult
	mc.GossipInterval, mc.GossipNodes = p.GossipInterval, p.GossipNodes
	mc.RetransmitMult = p.RetransmitMult
	mc.TCPTimeout = p.TCPTimeout
	mc.PushPullInterval = p.PushPullInterval
	mc.GossipToTheDeadTime = p.GossipToTheDeadTime
	mc.IndirectChecks = p.IndirectChecks
	mc.AwarenessMaxMultiplier = p.AwarenessMaxMultiplier
	mc.Label = c.Label
	mc.SecretKey = c.SecretKey
	mc.Keyring = c.Keyring
	return mc
}
