package region

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rendezvous-core/rendezvous/breakout"
	"github.com/rendezvous-core/rendezvous/federation/config"
	"github.com/rendezvous-core/rendezvous/federation/consensus"
	"github.com/rendezvous-core/rendezvous/federation/membership"
	"github.com/rendezvous-core/rendezvous/federation/membership/faultnet"
)

// Config configures one node. New validates it once.
type Config struct {
	// Federation is the parsed federation file. Required.
	Federation *config.Federation
	// Node is this node's name in the federation file. Required.
	Node string
	// StateDir holds the node's durable state: the raft log and snapshots,
	// the GTP restart counter. Required.
	StateDir string

	// RegistryDSN is the registry database ("sqlite:PATH" or
	// "postgres://…"). Required for core nodes; the witness has none.
	RegistryDSN string
	// KEKFile, or KEK with KEKID, is the key-encryption key of Ki/OPc at
	// rest (registry.Config). Exactly one is required for core nodes.
	KEKFile string
	KEK     []byte
	KEKID   string
	// RegistryCacheTTL bounds the staleness of the node's subscriber cache.
	// Zero → the registry's default.
	RegistryCacheTTL time.Duration

	// GossipKey is the gossip encryption key (16, 24 or 32 bytes). Optional
	// but strongly recommended outside the lab.
	GossipKey []byte
	// GossipProfile is the memberlist timing; zero → the WAN profile.
	GossipProfile membership.Profile
	// Faults, when set, carries the node's gossip and raft traffic through
	// a fault-injecting network (partitions, loss) — for drills and tests
	// on one machine, where tc netem is not available.
	Faults *faultnet.Network
	// RaftTiming is the raft timing; zero → the WAN preset.
	RaftTiming consensus.Timing
	// Policy tunes the leader's failover policy (confirmation and healthy
	// windows); zero fields → the production defaults.
	Policy consensus.PolicyConfig

	// LeaveOnClose makes Close leave the gossip pool gracefully, so peers
	// see the node as left at once. The lab leaves it off: a killed node
	// must look crashed to its peers.
	LeaveOnClose bool

	// APIToken is the operator API's bearer token. Required.
	APIToken string

	// Breakout selects the user plane's egress. Zero → the tun driver.
	Breakout BreakoutConfig

	// RehomeRate is how many devices per second this node moves off a
	// failed or draining region (CLR with Reattach-Required). Default 20.
	RehomeRate float64

	// DNS servers handed to devices in PCO (PGW and GGSN). Optional.
	DNS []string

	// Version is the software version gossiped and shown in status.
	Version string
	// Logger receives the node's logs; nil discards.
	Logger *slog.Logger
}

// BreakoutConfig selects and tunes a node's egress.
type BreakoutConfig struct {
	// NewEgress, when set, replaces the tun driver (tests, or a userspace
	// stack). See breakout.Config.NewEgress.
	NewEgress func(queues int) (breakout.Egress, error)
	// NATInterface is the internet-facing interface NAT masquerades to
	// (breakout.Config.NATInterface). Empty: the breakout's default.
	NATInterface string
	// NoNAT disables source NAT (the pools are routed).
	NoNAT bool
	// Workers is the number of user-plane workers; zero → the default.
	Workers int
}

func (c *Config) validate() error {
	var errs []error
	if c.Federation == nil {
		errs = append(errs, errors.New("Federation is required"))
	}
	if c.Node == "" {
		errs = append(errs, errors.New("Node is required"))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("StateDir is required"))
	}
	if c.APIToken == "" {
		errs = append(errs, errors.New("APIToken is required"))
	}
	if c.RehomeRate == 0 {
		c.RehomeRate = 20
	}
	if c.RehomeRate < 0 {
		errs = append(errs, fmt.Errorf("RehomeRate %v: must be positive", c.RehomeRate))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if len(errs) > 0 {
		return fmt.Errorf("region: config: %w", errors.Join(errs...))
	}
	return nil
}
