package pgw

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/region/gtpc"
	"github.com/rendezvous-core/rendezvous/region/session"
	"github.com/rendezvous-core/rendezvous/topology"
)

// SubscriberLookup reads a subscriber's profile; *registry.Store satisfies
// it. It returns an error wrapping registry.ErrNotFound for an unknown IMSI
// and registry.ErrUnavailable when the registry cannot answer.
type SubscriberLookup interface {
	Subscriber(ctx context.Context, imsi topology.IMSI) (registry.Subscriber, error)
}

// Config configures a PGW.
type Config struct {
	// Endpoint is the node's GTP-C endpoint; New registers the PGW as its
	// GTPv2 handler. Required.
	Endpoint *gtpc.Endpoint
	// Sessions is the node's session table. Required.
	Sessions *session.Table
	// Subscribers reads subscriber profiles. Required.
	Subscribers SubscriberLookup
	// UserPlane is our S5/S8-U address (the breakout's GTP-U address)
	// advertised in the PGW S5/S8-U F-TEID. Zero: the control address the
	// request arrived on.
	UserPlane netip.Addr
	// DNS servers offered in PCO/ePCO (IPv4 and IPv6).
	DNS []netip.Addr
	// LookupTimeout bounds the subscriber lookup of one Create Session
	// (the SGW retransmits after its T3). Default 2 s.
	LookupTimeout time.Duration
	// DeleteConcurrency bounds the Delete Bearer Requests in flight in one
	// DeleteSessions call. Default 64.
	DeleteConcurrency int
	// OnPeerRestart, if set, is told which sessions were removed because
	// their SGW restarted (TS 23.007).
	OnPeerRestart func(ev gtpc.PeerRestart, removed []session.Session)
	// Logger, default slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics. Nil means a private registry.
	Registerer prometheus.Registerer
}

func (c *Config) validate() error {
	if c.Endpoint == nil || c.Sessions == nil || c.Subscribers == nil {
		return errors.New("pgw: config: Endpoint, Sessions and Subscribers are required")
	}
	if c.LookupTimeout <= 0 {
		c.LookupTimeout = 2 * time.Second
	}
	if c.DeleteConcurrency <= 0 {
		c.DeleteConcurrency = 64
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	return nil
}
