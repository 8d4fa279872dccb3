package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rendezvous-core/rendezvous/breakout"
	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/topology"
)

// AnchorSink takes session anchors to the registry asynchronously.
// *registry.Store's Anchors() satisfies it. Enqueue must not block: it
// returns false when its queue is full (the anchor is dropped and counted).
type AnchorSink interface {
	Enqueue(registry.SessionAnchor) bool
}

// UsageRecorder records usage in the registry; *registry.Store satisfies
// it. The table calls it only from its own usage goroutine, never on the
// attach path.
type UsageRecorder interface {
	RecordUsage(ctx context.Context, u registry.Usage) error
}

// Pool is one UE address pool: the addresses of APN in this region.
type Pool struct {
	// APN is the network identifier (e.g. "internet"), matched without
	// case; "*" serves any APN that has no pool of its own.
	APN string
	// Prefix is an IPv4 prefix, /8 to /30.
	Prefix netip.Prefix
}

// Config configures a Table.
type Config struct {
	// NodeID goes into the top 8 bits of every TEID we allocate, so that a
	// stateless front can route GTP by TEID to the node.
	NodeID uint8
	// Node is the node's name, recorded in session anchors. Required.
	Node string
	// Region is the node's region, recorded in session anchors. Required.
	Region topology.RegionID
	// Pools are the region's UE address pools. At least one.
	Pools []Pool
	// Tunnels is the node's user plane. Required.
	Tunnels breakout.Tunnels
	// Anchors receives session anchors (start and end). Optional.
	Anchors AnchorSink
	// Usage receives the usage records of each session (interim ones every
	// UsageInterval, and a final one at removal). Optional.
	Usage UsageRecorder
	// UsageQueue bounds the usage records waiting for the registry; more
	// are dropped and counted. Default 65536.
	UsageQueue int
	// UsageInterval, if positive, sends an interim usage record (the bytes
	// since the previous record) for every session whose breakout counters
	// moved, every UsageInterval. Zero: only the final record at removal.
	UsageInterval time.Duration
	// UsageTimeout bounds one RecordUsage call. Default 5 s.
	UsageTimeout time.Duration
	// Now is the clock for session start and end times. Default time.Now.
	Now func() time.Time
	// Logger, default slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics. Nil means a private registry.
	Registerer prometheus.Registerer
}

func (c *Config) validate() error {
	if c.Node == "" {
		return errors.New("session: config: Node is required")
	}
	if c.Region == "" {
		return errors.New("session: config: Region is required")
	}
	if len(c.Pools) == 0 {
		return errors.New("session: config: no Pools")
	}
	if c.Tunnels == nil {
		return errors.New("session: config: Tunnels is required")
	}
	for i, p := range c.Pools {
		if strings.TrimSpace(p.APN) == "" {
			return fmt.Errorf("session: config: Pools[%d]: empty APN", i)
		}
		if !p.Prefix.IsValid() {
			return fmt.Errorf("session: config: Pools[%d] %q: invalid prefix", i, p.APN)
		}
	}
	if c.UsageQueue <= 0 {
		c.UsageQueue = 65536
	}
	if c.UsageTimeout <= 0 {
		c.UsageTimeout = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	return nil
}

// NormalizeAPN lower-cases an APN and strips the operator identifier
// ("<ni>.mncXXX.mccYYY.gprs", TS 23.003 §9.1.2).
func NormalizeAPN(apn string) string {
	apn = strings.ToLower(strings.TrimSuffix(apn, "."))
	if strings.HasSuffix(apn, ".gprs") {
		labels := strings.Split(apn, ".")
		if n := len(labels); n >= 4 && strings.HasPrefix(labels[n-3], "mnc") && strings.HasPrefix(labels[n-2], "mcc") {
			apn = strings.Join(labels[:n-3], ".")
		}
	}
	return apn
}

// ProfileAPN finds apn in the subscriber's APN profile, comparing
// normalized names; a "*" entry is the wildcard APN (TS 29.272 §7.3.35).
// The PGW and the GGSN both admit sessions by it.
func ProfileAPN(sub registry.Subscriber, apn string) (registry.APN, bool) {
	n := NormalizeAPN(apn)
	var wild *registry.APN
	for i := range sub.APNs {
		name := NormalizeAPN(sub.APNs[i].Name)
		if name == n {
			return sub.APNs[i], true
		}
		if name == "*" {
			wild = &sub.APNs[i]
		}
	}
	if wild != nil {
		return *wild, true
	}
	return registry.APN{}, false
}
