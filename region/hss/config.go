package hss

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rendezvous-core/rendezvous/topology"
)

// Config configures a Server. New validates it once: validate fills the
// defaults documented on each field and rejects contradictions.
type Config struct {
	// OriginHost and OriginRealm are this node's Diameter identity
	// (RFC 6733 §6.3, §6.4), e.g. "hss.jp.rendezvous.example" and
	// "rendezvous.example". Required.
	OriginHost  string
	OriginRealm string

	// Listen are the TCP addresses to serve S6a on (RFC 6733 §2.1: port
	// 3868). Port 0 picks a free port; Server.Addrs reports the bound ones.
	// Required, at least one.
	Listen []netip.AddrPort

	// Region is the region this node belongs to: the SQN IND slice it
	// allocates from (TS 33.102 Annex C) and the registry writes it makes.
	// Required.
	Region topology.RegionID

	// Peers is the allowlist checked on every CER (RFC 6733 §5.3): a peer is
	// accepted when at least one rule matches its Origin-Host, Origin-Realm
	// and source address. An unknown peer gets a CEA with 3010
	// DIAMETER_UNKNOWN_PEER and is disconnected. Empty means nobody may
	// connect; LabPeers allows everything from 127.0.0.0/8.
	Peers []PeerRule

	// Subscribers is the subscriber registry (*registry.Store). Required.
	Subscribers Subscribers
	// Steering picks the region whose PGW a ULA names. Required.
	Steering Steerer
	// PGWs are the PGWs of the regions, named in MIP6-Agent-Info of the ULA
	// (TS 29.272 §7.3.35). The steered region must have an entry, or the ULR
	// fails with 3004 DIAMETER_TOO_BUSY. Required, at least one.
	PGWs map[topology.RegionID]PGW

	// MaxInFlight bounds the S6a requests handled concurrently by this node
	// (all connections together), each on its own goroutine. A request
	// beyond it is answered at once with 3004
	// DIAMETER_TOO_BUSY (RFC 6733 §7.1.3) so that the reader, and with it
	// the watchdog, never waits behind requests. A request may take up to
	// RequestTimeout (registry calls); Close waits for them. Default 512,
	// at most 65536.
	MaxInFlight int
	// MaxOutbound bounds the CLRs to previous MMEs in flight after ULAs
	// (each may wait RequestTimeout × (RequestRetries+1)); beyond it a CLR
	// is dropped and counted (rdv_hss_outbound_requests_total{result=
	// "dropped"}). CancelLocation and InsertSubscriberData run on the
	// caller's goroutine and are not counted here. Default 64.
	MaxOutbound int
	// WatchdogInterval is Tw of RFC 3539 §3.4.1 (RFC 6733 §5.5): after Tw
	// without traffic from a peer we send a DWR, after another Tw without an
	// answer we close the connection. Default 30 s. RFC 3539 asks for at
	// least 6 s; shorter values are accepted for tests.
	WatchdogInterval time.Duration
	// CERTimeout is how long a new connection may take to send its CER
	// before it is closed. Default 10 s.
	CERTimeout time.Duration
	// WriteTimeout bounds one write to a peer's socket; a peer that does not
	// read is disconnected. Default 10 s.
	WriteTimeout time.Duration
	// RequestTimeout is how long an HSS-initiated request (CLR, IDR) waits
	// for its answer before it is retransmitted with the T flag
	// (RFC 6733 §5.5.4). Default 5 s.
	RequestTimeout time.Duration
	// RequestRetries is how many times an unanswered HSS-initiated request is
	// retransmitted. Default 2; negative means none.
	RequestRetries int
	// MaxMessageSize bounds the Message Length a peer may announce (bytes).
	// Longer messages are answered 5015 DIAMETER_INVALID_MESSAGE_LENGTH and
	// the connection is closed. Default 65536; at least 1024.
	MaxMessageSize int
	// MaxVectors caps Number-Of-Requested-Vectors (TS 29.272 §7.3.14).
	// Default 5.
	MaxVectors int
	// ProductName is sent in CEA. Default "rendezvous-hss".
	ProductName string

	// Logger receives the node's logs. Keys, OPc and vectors are never
	// logged. Default: discard.
	Logger *slog.Logger
	// Registerer receives the node's metrics. Default: a private registry
	// (never prometheus.DefaultRegisterer).
	Registerer prometheus.Registerer
	// Clock drives the watchdog and request timers. Default: the system
	// clock.
	Clock Clock
}

// PGW is the PGW-C of a region as the ULA names it in MIP6-Agent-Info.
type PGW struct {
	// Host is the PGW's Diameter-style FQDN, sent as MIP-Home-Agent-Host
	// Destination-Host (TS 29.272 §7.3.35, RFC 5447 §4.3). Required.
	Host string
	// Realm is sent as MIP-Home-Agent-Host Destination-Realm. Default: the
	// part of Host after its first dot, or Config.OriginRealm.
	Realm string
	// Addr is the PGW's S8 address, sent as MIP-Home-Agent-Address.
	// Required.
	Addr netip.Addr
}

// PeerRule is one allowlist entry. Every non-empty part must match.
type PeerRule struct {
	// Host is a path.Match pattern for the CER Origin-Host ("*" or empty:
	// any), compared case-insensitively (RFC 6733 §4.3.1 DiameterIdentity).
	Host string
	// Realm is a path.Match pattern for the CER Origin-Realm.
	Realm string
	// Prefixes are the source prefixes allowed; empty means any.
	Prefixes []netip.Prefix
}

// LabPeers allows any Diameter peer from 127.0.0.0/8 (DESIGN.md §5).
func LabPeers() []PeerRule {
	return []PeerRule{{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}
}

func (r PeerRule) match(host, realm string, src netip.Addr) bool {
	if !globMatch(r.Host, host) || !globMatch(r.Realm, realm) {
		return false
	}
	if len(r.Prefixes) == 0 {
		return true
	}
	src = src.Unmap()
	for _, p := range r.Prefixes {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

func globMatch(pattern, s string) bool {
	if pattern == "" || pattern == "*" {
		return true
	}
	ok, err := path.Match(strings.ToLower(pattern), strings.ToLower(s))
	return err == nil && ok
}

// Clock is the time source of the watchdog and the request timers.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is a Clock's timer, shaped like *time.Timer.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration) bool
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
func (systemClock) NewTimer(d time.Duration) Timer {
	return sysTimer{time.NewTimer(d)}
}

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time        { return t.t.C }
func (t sysTimer) Stop() bool                 { return t.t.Stop() }
func (t sysTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }

// validate fills defaults and rejects contradictions.
func (c *Config) validate() error {
	var errs []error
	if c.OriginHost == "" || c.OriginRealm == "" {
		errs = append(errs, errors.New("OriginHost and OriginRealm are required"))
	}
	if len(c.Listen) == 0 {
		errs = append(errs, errors.New("at least one Listen address is required"))
	}
	for _, ap := range c.Listen {
		if !ap.IsValid() {
			errs = append(errs, fmt.Errorf("invalid Listen address %v", ap))
		}
	}
	if c.Region == "" {
		errs = append(errs, errors.New("Region is required"))
	}
	if c.Subscribers == nil {
		errs = append(errs, errors.New("Subscribers is required"))
	}
	if c.Steering == nil {
		errs = append(errs, errors.New("Steering is required"))
	}
	if len(c.PGWs) == 0 {
		errs = append(errs, errors.New("PGWs needs at least one region"))
	}
	for r, p := range c.PGWs {
		if p.Host == "" || !p.Addr.IsValid() {
			errs = append(errs, fmt.Errorf("PGW of region %s needs Host and Addr", r))
		}
	}
	for i, p := range c.Peers {
		for _, pat := range []string{p.Host, p.Realm} {
			if _, err := path.Match(pat, ""); err != nil {
				errs = append(errs, fmt.Errorf("Peers[%d]: bad pattern %q: %w", i, pat, err))
			}
		}
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 512
	}
	if c.MaxOutbound == 0 {
		c.MaxOutbound = 64
	}
	if c.WatchdogInterval == 0 {
		c.WatchdogInterval = 30 * time.Second
	}
	if c.CERTimeout == 0 {
		c.CERTimeout = 10 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.RequestRetries == 0 {
		c.RequestRetries = 2
	} else if c.RequestRetries < 0 {
		c.RequestRetries = 0
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 65536
	}
	if c.MaxVectors == 0 {
		c.MaxVectors = 5
	}
	if c.ProductName == "" {
		c.ProductName = "rendezvous-hss"
	}
	if c.MaxInFlight < 0 || c.MaxOutbound < 0 || c.WatchdogInterval < 0 || c.CERTimeout < 0 || c.WriteTimeout < 0 ||
		c.RequestTimeout < 0 || c.MaxVectors < 0 {
		errs = append(errs, errors.New("MaxInFlight, MaxVectors and durations must not be negative"))
	}
	if c.MaxInFlight > 65536 {
		errs = append(errs, fmt.Errorf("MaxInFlight %d above 65536", c.MaxInFlight))
	}
	if c.MaxMessageSize < 1024 || c.MaxMessageSize > 1<<24-1 {
		errs = append(errs, fmt.Errorf("MaxMessageSize %d out of range 1024..16777215", c.MaxMessageSize))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	return errors.Join(errs...)
}

func (p PGW) realm(fallback string) string {
	if p.Realm != "" {
		return p.Realm
	}
	if _, rest, ok := strings.Cut(p.Host, "."); ok && rest != "" {
		return rest
	}
	return fallback
}
