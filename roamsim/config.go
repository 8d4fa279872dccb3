package roamsim

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

// Mode selects what Run does.
type Mode uint8

const (
	// OneShot attaches every device, measures data round-trips
	// (Config.Probes each), detaches, and returns.
	OneShot Mode = iota
	// Continuous keeps devices attached until ctx ends: periodic data every
	// DataInterval, re-attach on CLR Reattach-Required or PGW-initiated
	// deletion, retry failed attaches every RetryInterval; then detaches all.
	Continuous
)

func (m Mode) String() string {
	if m == Continuous {
		return "continuous"
	}
	return "one-shot"
}

// Standard ports.
const (
	PortGTPC     = 2123
	PortGTPU     = 2152
	PortDiameter = 3868
)

// Config configures a Sim. The zero value of every optional field selects
// the documented default; New validates and fills defaults once.
type Config struct {
	// Devices to emulate. Required; IMSIs unique.
	Devices []Device
	// Countries is the table used to name an MME and report a device's
	// country from its visited MCC. Default DefaultCountries().
	Countries []Country

	// HSS is the list of S6a peers ("host:port"). Required when any device
	// is 4G. MME i starts at HSS[i % len] and fails over to the next peer
	// when its connection drops.
	HSS []string
	// MMEPool: 0 (default) = one MME per visited country, Origin-Host
	// "mme.<cc>.<OriginRealm>"; N > 0 = a pool of N MMEs
	// ("mme<i>.pool.<OriginRealm>"), devices spread by index.
	MMEPool int
	// OriginRealm of the MMEs. Default "roamsim.example".
	OriginRealm string
	// DestinationRealm of S6a requests. Default: the peer's Origin-Realm
	// (from its CEA).
	DestinationRealm string
	// DiameterLocal is the local address of Diameter connections (optional).
	DiameterLocal netip.Addr
	// DiameterTimeout bounds each S6a request and the CER/CEA. Default 5 s.
	DiameterTimeout time.Duration
	// WatchdogInterval between our DWRs. Default 30 s.
	WatchdogInterval time.Duration

	// GTPC is the local SGW/SGSN GTP-C address; required. Port default 2123.
	GTPC netip.AddrPort
	// GTPU is the local SGW/SGSN GTP-U address. Default GTPC's address,
	// port 2152.
	GTPU netip.AddrPort
	// PGWPort is the GTP-C port of the PGWs named in ULAs. Default 2123.
	PGWPort uint16
	// GGSN is the Gp GTP-C address for 3G devices (required if any).
	GGSN netip.AddrPort
	// T3 is the GTP-C retransmission timer, N3 the number of
	// retransmissions (TS 29.274 §7.6). Defaults 2 s and 2.
	T3 time.Duration
	N3 int
	// RestartCounter is our Recovery IE value.
	RestartCounter uint8
	// EchoInterval: in Continuous mode, the SGW sends a GTPv2 Echo Request
	// to every PGW with sessions this often; a changed Recovery (peer
	// restart, TS 23.007) drops that PGW's older sessions and re-attaches
	// their devices. Default 10 s; < 0 disables.
	EchoInterval time.Duration
	// ModifyBearer: after each 4G Create Session, also send a Modify Bearer
	// Request (exercises the PGW's MBR).
	ModifyBearer bool

	// PGWRegions maps a PGW (or GGSN) GTP-C address to its region. A PGW
	// not listed is attributed by its MIP-Home-Agent-Host: the first label
	// equal (case-insensitive) to a region in this map's values or
	// JP/US/DE/AU, else region "?".
	PGWRegions map[netip.Addr]topology.RegionID

	// Target is the internet host probes go to. Invalid = no data traffic.
	Target netip.Addr
	// UDPPort: 0 (default) = ICMP echo probes; else UDP datagrams to this
	// port (a reply carrying the same payload counts as a round-trip).
	UDPPort uint16
	// Probes per device in OneShot mode. Default 3.
	Probes int
	// DataInterval between probes of one device. Default 1 s (OneShot:
	// 200 ms).
	DataInterval time.Duration
	// ProbeTimeout: a probe unanswered this long is lost. Default 2 s.
	ProbeTimeout time.Duration

	// Mode: OneShot (default) or Continuous.
	Mode Mode
	// Concurrency bounds in-flight device procedures. Default 64.
	Concurrency int
	// AttachRate is the token-bucket rate of attach attempts per second
	// (burst AttachBurst, default max(1, rate/10)). Default 100; < 0 means
	// unlimited.
	AttachRate  float64
	AttachBurst int
	// ReattachDelay after a CLR with Reattach-Required or a Delete Bearer
	// Request with cause "reactivation requested". Default 200 ms.
	ReattachDelay time.Duration
	// RetryInterval before a Continuous-mode device retries a failed attach.
	// Default 5 s.
	RetryInterval time.Duration
	// DetachTimeout bounds the final detach of all devices. Default 10 s.
	DetachTimeout time.Duration

	// Logger; default slog.Default().
	Logger *slog.Logger
	// OnEvent, if set, is called synchronously for every device event, from
	// several goroutines (workers, socket readers): it must be safe for
	// concurrent use, fast, and must not call back into the Sim (except
	// Snapshot).
	OnEvent func(Event)
}

func (c *Config) validate() error {
	if len(c.Devices) == 0 {
		return errors.New("roamsim: config: no devices")
	}
	if len(c.Devices) > 1<<24-2 {
		return fmt.Errorf("roamsim: config: %d devices, at most %d", len(c.Devices), 1<<24-2)
	}
	if c.Countries == nil {
		c.Countries = DefaultCountries()
	}
	c.Devices = slices.Clone(c.Devices) // defaults are filled in our copy, not the caller's
	seen := make(map[topology.IMSI]bool, len(c.Devices))
	any4G, any3G := false, false
	for i := range c.Devices {
		d := &c.Devices[i]
		if seen[d.IMSI] {
			return fmt.Errorf("roamsim: config: duplicate IMSI %q", d.IMSI)
		}
		seen[d.IMSI] = true
		if d.RAT == 0 {
			d.RAT = RAT4G
		}
		if _, err := plmnBCD(d.Visited); err != nil {
			return fmt.Errorf("roamsim: config: device %s: visited PLMN: %w", d.IMSI, err)
		}
		if d.RAT == RAT3G {
			any3G = true
		} else {
			any4G = true
		}
	}
	if any4G && len(c.HSS) == 0 {
		return errors.New("roamsim: config: 4G devices need at least one HSS address")
	}
	if any3G && !c.GGSN.IsValid() {
		return errors.New("roamsim: config: 3G devices need a GGSN address")
	}
	if !c.GTPC.Addr().IsValid() {
		return errors.New("roamsim: config: GTPC (local SGW/SGSN GTP-C address) is required")
	}
	if c.GTPC.Port() == 0 {
		c.GTPC = netip.AddrPortFrom(c.GTPC.Addr(), PortGTPC)
	}
	if !c.GTPU.Addr().IsValid() {
		c.GTPU = netip.AddrPortFrom(c.GTPC.Addr(), PortGTPU)
	} else if c.GTPU.Port() == 0 {
		c.GTPU = netip.AddrPortFrom(c.GTPU.Addr(), PortGTPU)
	}
	if c.MMEPool < 0 {
		return fmt.Errorf("roamsim: config: MMEPool %d < 0", c.MMEPool)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.OriginRealm == "" {
		c.OriginRealm = "roamsim.example"
	}
	def(&c.DiameterTimeout, 5*time.Second)
	def(&c.WatchdogInterval, 30*time.Second)
	if c.PGWPort == 0 {
		c.PGWPort = PortGTPC
	}
	def(&c.T3, 2*time.Second)
	if c.EchoInterval == 0 {
		c.EchoInterval = 10 * time.Second
	}
	if c.N3 <= 0 {
		c.N3 = 2
	}
	if c.Probes <= 0 {
		c.Probes = 3
	}
	if c.Mode == OneShot {
		def(&c.DataInterval, 200*time.Millisecond)
	} else {
		def(&c.DataInterval, time.Second)
	}
	def(&c.ProbeTimeout, 2*time.Second)
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.AttachRate == 0 {
		c.AttachRate = 100
	}
	if c.AttachBurst <= 0 {
		c.AttachBurst = max(1, int(c.AttachRate/10))
	}
	def(&c.ReattachDelay, 200*time.Millisecond)
	def(&c.RetryInterval, 5*time.Second)
	def(&c.DetachTimeout, 10*time.Second)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// regionOf attributes a PGW to a region (see Config.PGWRegions).
func (c *Config) regionOf(pgw netip.Addr, host string) topology.RegionID {
	if r, ok := c.PGWRegions[pgw]; ok {
		return r
	}
	known := map[string]topology.RegionID{"jp": topology.JP, "us": topology.US, "de": topology.DE, "au": topology.AU}
	for _, r := range c.PGWRegions {
		known[strings.ToLower(string(r))] = r
	}
	for _, label := range strings.Split(strings.ToLower(host), ".") {
		if r, ok := known[label]; ok {
			return r
		}
	}
	return "?"
}
