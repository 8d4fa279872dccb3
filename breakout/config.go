package breakout

import (
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Config configures one node's breakout. Several breakouts may run in one
// process (the lab: one per region node) as long as Listen, TUNName and the
// nftables table (derived from Name) differ, or they live in different
// network namespaces (NetNS).
type Config struct {
	// Name identifies the node in logs, metrics (label "node") and the
	// nftables table "rdv_<Name>". Required; letters, digits, '-', '_'.
	Name string

	// Listen is the GTP-U endpoint, normally port 2152 (TS 29.281 §4.4.2).
	// The address must be specific (not 0.0.0.0 or ::): it is the GTP-U
	// Peer Address carried in Error Indications (§8.4). Required.
	Listen netip.AddrPort

	// Workers is the number of fast-path workers. Each owns one
	// SO_REUSEPORT UDP socket and one TUN queue, and runs exactly two
	// goroutines (uplink and downlink). Default GOMAXPROCS, at most 64.
	Workers int

	// BatchSize is the number of datagrams per recvmmsg/sendmmsg and of
	// packets per TUN read burst. Default 64, at most 1024.
	BatchSize int

	// SocketBuffer is SO_RCVBUF/SO_SNDBUF of each worker's socket, in
	// octets. Default 4 MiB: it rides out ~100 ms of scheduling delay at
	// 20k pps (256 KiB lost 15 % at 20k pps on a loaded 2-core box).
	SocketBuffer int

	// NetNS, if set, is the path of a network namespace (e.g.
	// /var/run/netns/jp1) in which the sockets, the TUN device, its routes
	// and the nftables table are created. Empty: the caller's namespace.
	NetNS string

	// NewEgress, if set, opens a custom egress with one queue per worker
	// instead of the TUN driver; the TUN* , Pools, NAT* and MTU fields are
	// then ignored.
	NewEgress func(queues int) (Egress, error)

	// TUNName is the TUN device of the tun driver. Default "rdv-<Name>"
	// truncated to 15 octets (IFNAMSIZ-1).
	TUNName string

	// Pools are the node's UE address pools; each becomes a route via the
	// TUN device, and source NAT applies to packets from them.
	Pools []netip.Prefix

	// TUNAddr, if valid, is assigned to the TUN device (e.g. the first
	// address of a pool as the UE's gateway). Optional: forwarding needs none.
	TUNAddr netip.Prefix

	// MTU of the TUN device in octets: the largest inner packet the kernel
	// hands us on the downlink. Default 1464 = 1500 - 36 (outer IPv4, UDP,
	// GTP-U header), so encapsulated packets fit a 1500-octet path. Larger
	// downlink packets are fragmented by the kernel (DF clear) or answered
	// with ICMP "fragmentation needed" (DF set) before they reach us.
	MTU int

	// NATInterface, if set, restricts masquerading to packets leaving
	// through this interface (the internet-facing one, "oifname").
	NATInterface string
	// NATAddr, if valid, makes source NAT map to this address (snat)
	// instead of the outgoing interface's address (masquerade).
	NATAddr netip.Addr
	// NoNAT disables the nftables table altogether.
	NoNAT bool

	// Recovery is the restart counter put in Echo Responses. TS 29.281
	// §8.2 says it is not used in GTP-U and is set to zero; default 0.
	Recovery uint8

	// ErrorIndicationRate and ErrorIndicationBurst bound the Error
	// Indications sent for unknown TEIDs (TS 29.281 §7.3.1), node-wide:
	// never a reply storm. Defaults 10 per second, burst 1.
	ErrorIndicationRate  rate.Limit
	ErrorIndicationBurst int

	// OnErrorIndication, if set, is called from a worker for each Error
	// Indication received from a peer (TS 29.281 §7.3.1: the receiver
	// should tear the bearer down; the control plane decides). It must not
	// block.
	OnErrorIndication func(peer netip.AddrPort, teid TEID)

	// Logger receives operational logs. Default: discard.
	Logger *slog.Logger
	// Registerer receives the node's metrics. Default: a private registry
	// (never the global default).
	Registerer prometheus.Registerer
	// Now is the clock for rate limiting. Default time.Now; tests inject.
	Now func() time.Time
}

func (c *Config) validate() error {
	if c.Name == "" {
		return fmt.Errorf("breakout: config: Name is required")
	}
	for _, r := range c.Name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("breakout: config: Name %q: only letters, digits, '-' and '_'", c.Name)
		}
	}
	if !c.Listen.IsValid() || c.Listen.Addr().IsUnspecified() || c.Listen.Port() == 0 {
		return fmt.Errorf("breakout: config: Listen %v must be a specific address and port (normally :2152)", c.Listen)
	}
	c.Listen = netip.AddrPortFrom(c.Listen.Addr().Unmap(), c.Listen.Port())
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.Workers < 1 || c.Workers > 64 {
		return fmt.Errorf("breakout: config: Workers %d not in 1..64", c.Workers)
	}
	if c.BatchSize == 0 {
		c.BatchSize = 64
	}
	if c.BatchSize < 1 || c.BatchSize > 1024 {
		return fmt.Errorf("breakout: config: BatchSize %d not in 1..1024", c.BatchSize)
	}
	if c.SocketBuffer == 0 {
		c.SocketBuffer = 4 << 20
	}
	if c.SocketBuffer < 4096 {
		return fmt.Errorf("breakout: config: SocketBuffer %d below 4096", c.SocketBuffer)
	}
	if c.TUNName == "" {
		c.TUNName = "rdv-" + c.Name
		if len(c.TUNName) > 15 {
			c.TUNName = c.TUNName[:15]
		}
	}
	if len(c.TUNName) > 15 {
		return fmt.Errorf("breakout: config: TUNName %q longer than 15 octets", c.TUNName)
	}
	if c.MTU == 0 {
		c.MTU = 1500 - outerOverheadIP4
	}
	if c.MTU < 576 || c.MTU > 65535-outerOverheadIP6 {
		return fmt.Errorf("breakout: config: MTU %d not in 576..%d", c.MTU, 65535-outerOverheadIP6)
	}
	c.Pools = append([]netip.Prefix(nil), c.Pools...) // never write to the caller's array
	for i, p := range c.Pools {
		if !p.IsValid() {
			return fmt.Errorf("breakout: config: Pools[%d] is not a valid prefix", i)
		}
		c.Pools[i] = p.Masked()
	}
	if c.ErrorIndicationRate == 0 {
		c.ErrorIndicationRate = 10
	}
	if c.ErrorIndicationBurst == 0 {
		c.ErrorIndicationBurst = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}
