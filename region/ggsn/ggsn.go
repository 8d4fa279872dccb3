package ggsn

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rendezvous-core/rendezvous/breakout"
	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/region/gtpc"
	"github.com/rendezvous-core/rendezvous/region/session"
	"github.com/rendezvous-core/rendezvous/topology"
	"github.com/wmnsk/go-gtp/gtpv1"
	"github.com/wmnsk/go-gtp/gtpv1/ie"
	"github.com/wmnsk/go-gtp/gtpv1/message"
)

// GGSN is the Gn/Gp GGSN of a node: Create, Update and Delete PDP Context
// from SGSNs (primary contexts), and GGSN-initiated Delete PDP Context.
type GGSN struct {
	cfg       Config
	ep        *gtpc.Endpoint
	tab       *session.Table
	m         *metrics
	closeOnce sync.Once
}

// New validates cfg and registers the GGSN as the endpoint's GTPv1 handler.
func New(cfg Config) (*GGSN, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	g := &GGSN{cfg: cfg, ep: cfg.Endpoint, tab: cfg.Sessions, m: m}
	g.ep.Handle(gtpc.V1, g)
	return g, nil
}

// Close unregisters the GGSN from the endpoint. Idempotent.
func (g *GGSN) Close() error {
	g.closeOnce.Do(func() { g.ep.Handle(gtpc.V1, nil) })
	return nil
}

// HandleRequest implements gtpc.Handler.
func (g *GGSN) HandleRequest(r *gtpc.Request) (gtpc.Message, error) {
	msg, err := message.Parse(r.Raw)
	if err == nil {
		// go-gtp tolerates some bodies that are not a sequence of IEs.
		var h *message.Header
		if h, err = message.ParseHeader(r.Raw); err == nil {
			_, err = ie.ParseMultiIEs(h.Payload)
		}
	}
	if err != nil {
		// TS 29.060 §11.1: a request that cannot be decoded is
		// answered with "Invalid message format" (193) where possible.
		g.m.malformed.Inc()
		return g.reject(r.Header.Type, 0, uint16(r.Header.Seq), gtpv1.ResCauseInvalidMessageFormat), nil
	}
	switch m := msg.(type) {
	case *message.CreatePDPContextRequest:
		return g.createPDP(r, m), nil
	case *message.UpdatePDPContextRequest:
		return g.updatePDP(r, m), nil
	case *message.DeletePDPContextRequest:
		return g.deletePDP(r, m), nil
	}
	g.m.unsupported.Inc()
	return nil, nil
}

func (g *GGSN) reject(t uint8, teid uint32, seq uint16, cause uint8) gtpc.Message {
	g.m.responses.WithLabelValues(strconv.Itoa(int(t)), strconv.Itoa(int(cause))).Inc()
	c := ie.NewCause(cause)
	switch t {
	case message.MsgTypeCreatePDPContextRequest:
		return message.NewCreatePDPContextResponse(teid, seq, c)
	case message.MsgTypeUpdatePDPContextRequest:
		return message.NewUpdatePDPContextResponse(teid, seq, c)
	case message.MsgTypeDeletePDPContextRequest:
		return message.NewDeletePDPContextResponse(teid, seq, c)
	}
	return nil
}

func (g *GGSN) accepted(t uint8) {
	g.m.responses.WithLabelValues(strconv.Itoa(int(t)), strconv.Itoa(int(gtpv1.ResCauseRequestAccepted))).Inc()
}

// gsnAddr decodes an IPv4 GSN Address IE (TS 29.060 §7.7.32).
func gsnAddr(i *ie.IE, port uint16) (netip.AddrPort, bool) {
	if i == nil || len(i.Payload) != 4 {
		return netip.AddrPort{}, false
	}
	a := netip.AddrFrom4([4]byte(i.Payload))
	if a.IsUnspecified() {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, port), true
}

func teidOf(i *ie.IE) (breakout.TEID, bool) {
	if i == nil {
		return 0, false
	}
	v, err := i.TEID()
	if err != nil || v == 0 {
		return 0, false
	}
	return breakout.TEID(v), true
}

// createPDP implements TS 29.060 §7.3.1/§7.3.2 for a primary PDP context.
func (g *GGSN) createPDP(r *gtpc.Request, m *message.CreatePDPContextRequest) gtpc.Message {
	const t = message.MsgTypeCreatePDPContextRequest
	seq := m.Sequence()
	// The SGSN's control TEID addresses the response, even a rejection.
	// NSAPI 0–4 are reserved (TS 24.008 §10.5.6.2) but sgsnemu sends 0 by
	// default, as osmo-ggsn accepts: we accept any 4-bit value.
	sgsnTEIDC, haveC := teidOf(m.TEIDCPlane)
	peerT := uint32(sgsnTEIDC)
	switch {
	case m.TEIDDataI == nil, m.NSAPI == nil, m.SGSNAddressForSignalling == nil,
		m.SGSNAddressForUserTraffic == nil, m.QoSProfile == nil, m.IMSI == nil, m.TEIDCPlane == nil:
		return g.reject(t, peerT, seq, gtpv1.ResCauseMandatoryIEMissing)
	}
	if m.LinkedNSAPI != nil {
		// Secondary PDP contexts (TS 29.060 §7.3.1) are not served.
		return g.reject(t, peerT, seq, gtpv1.ResCauseServiceNotSupported)
	}
	sgsnTEIDU, haveU := teidOf(m.TEIDDataI)
	nsapi, err := m.NSAPI.NSAPI()
	sgsnC, okC := gsnAddr(m.SGSNAddressForSignalling, gtpc.Port)
	sgsnU, okU := gsnAddr(m.SGSNAddressForUserTraffic, 2152)
	if !haveC || !haveU || err != nil || nsapi > 15 || !okC || !okU {
		return g.reject(t, peerT, seq, gtpv1.ResCauseMandatoryIEIncorrect)
	}
	imsiStr, err := m.IMSI.IMSI()
	if err != nil {
		return g.reject(t, peerT, seq, gtpv1.ResCauseMandatoryIEIncorrect)
	}
	imsi, err := topology.ParseIMSI(imsiStr)
	if err != nil {
		return g.reject(t, peerT, seq, gtpv1.ResCauseMandatoryIEIncorrect)
	}
	apn := ""
	if m.APN != nil {
		apn, _ = m.APN.AccessPointName()
	}
	if apn == "" {
		return g.reject(t, peerT, seq, gtpv1.ResCauseMissingOrUnknownAPN)
	}
	// PDP type (TS 29.060 §7.7.27): IETF IPv4 only; IPv4v6 gets IPv4 with
	// cause 129 "New PDP type due to network preference".
	cause := gtpv1.ResCauseRequestAccepted
	if m.EndUserAddress != nil {
		p := m.EndUserAddress.Payload
		if len(p) < 2 || p[0]&0x0f != 1 {
			return g.reject(t, peerT, seq, gtpv1.ResCauseUnknownPDPAddressOrPDPType)
		}
		switch p[1] {
		case 0x21:
		case 0x8d:
			cause = gtpv1.ResCauseNewPDPTypeDueToNetworkPreference
		default:
			return g.reject(t, peerT, seq, gtpv1.ResCauseUnknownPDPAddressOrPDPType)
		}
	}
	if m.Recovery != nil {
		if rc, err := m.Recovery.Recovery(); err == nil {
			g.ep.ObserveRecovery(gtpc.V1, r.Peer.Addr(), rc)
		}
	}
	if !g.tab.HasAPN(apn) {
		return g.reject(t, peerT, seq, gtpv1.ResCauseMissingOrUnknownAPN)
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.LookupTimeout)
	sub, err := g.cfg.Subscribers.Subscriber(ctx, imsi)
	cancel()
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return g.reject(t, peerT, seq, gtpv1.ResCauseUserAuthenticationFailed)
	case err != nil:
		g.cfg.Logger.Warn("ggsn: subscriber lookup", "imsi", imsi, "err", err)
		return g.reject(t, peerT, seq, gtpv1.ResCauseSystemFailure)
	case sub.Status != registry.StatusActive:
		return g.reject(t, peerT, seq, gtpv1.ResCauseUserAuthenticationFailed)
	}
	prof, ok := session.ProfileAPN(sub, apn)
	if !ok {
		return g.reject(t, peerT, seq, gtpv1.ResCauseAPNAccessDeniedNoSubscription)
	}
	s, err := g.tab.Create(session.Params{
		Kind: session.KindGGSN, IMSI: imsi, Bearer: nsapi, APN: apn,
		PeerC: sgsnC, PeerU: sgsnU, Local: r.Local.Addr(), PeerTEIDC: sgsnTEIDC, PeerTEIDU: sgsnTEIDU,
		AMBRUp: prof.AMBRUplink / 1000, AMBRDown: prof.AMBRDownlink / 1000, QCI: prof.QCI, ARP: prof.ARPPriority,
	})
	if err != nil {
		c := gtpv1.ResCauseSystemFailure
		switch {
		case errors.Is(err, session.ErrNoPool):
			c = gtpv1.ResCauseMissingOrUnknownAPN
		case errors.Is(err, session.ErrPoolExhausted):
			c = gtpv1.ResCauseAllDynamicPDPAddressesAreOccupied
		case errors.Is(err, session.ErrNoTEID):
			c = gtpv1.ResCauseNoResourcesAvailable
		}
		g.cfg.Logger.Warn("ggsn: create PDP context", "imsi", imsi, "apn", apn, "err", err)
		return g.reject(t, peerT, seq, c)
	}
	g.accepted(t)
	return message.NewCreatePDPContextResponse(peerT, seq, g.acceptIEs(r, cause, s, m.PCO, m.QoSProfile, true)...)
}

// acceptIEs are the IEs of an accepting Create/Update PDP Context Response
// (TS 29.060 §7.3.2 / §7.3.4), in the order of the tables.
func (g *GGSN) acceptIEs(r *gtpc.Request, cause uint8, s session.Session, pco, qos *ie.IE, create bool) []*ie.IE {
	local := r.Local.Addr().As4()
	user := local
	if g.cfg.UserPlane.Is4() {
		user = g.cfg.UserPlane.As4()
	}
	ies := []*ie.IE{ie.NewCause(cause)}
	if create {
		ies = append(ies, ie.NewReorderingRequired(false))
	}
	ies = append(ies,
		ie.NewRecovery(g.ep.RestartCounter()),
		ie.NewTEIDDataI(uint32(s.TEID)),
		ie.NewTEIDCPlane(uint32(s.TEID)),
		ie.NewChargingID(s.ChargingID),
	)
	if create {
		ies = append(ies, ie.NewEndUserAddress(s.UE.String()))
	}
	if pco != nil {
		if p := gtpc.AnswerPCO(pco.Payload, g.cfg.DNS, false); p != nil {
			ies = append(ies, ie.New(ie.ProtocolConfigurationOptions, p))
		}
	}
	ies = append(ies,
		ie.New(ie.GSNAddress, local[:]), // for the control plane
		ie.New(ie.GSNAddress, user[:]),  // for user traffic
		ie.New(ie.QoSProfile, qos.Payload),
	)
	return ies
}

func (g *GGSN) sessionOf(teid uint32) (session.Session, bool) {
	s, ok := g.tab.ByTEID(breakout.TEID(teid))
	if !ok || s.Kind != session.KindGGSN {
		return session.Session{}, false
	}
	return s, true
}

// updatePDP implements the SGSN-initiated Update PDP Context (TS 29.060
// §7.3.3/§7.3.4): new SGSN addresses and TEIDs (inter-SGSN change) re-install
// the tunnel.
func (g *GGSN) updatePDP(r *gtpc.Request, m *message.UpdatePDPContextRequest) gtpc.Message {
	const t = message.MsgTypeUpdatePDPContextRequest
	seq := m.Sequence()
	s, ok := g.sessionOf(m.TEID())
	if !ok {
		return g.reject(t, 0, seq, gtpv1.ResCauseNonExistent)
	}
	peerT := uint32(s.PeerTEIDC)
	if m.TEIDDataI == nil || m.NSAPI == nil || m.SGSNAddressForCPlane == nil ||
		m.SGSNAddressForUserTraffic == nil || m.QoSProfile == nil {
		return g.reject(t, peerT, seq, gtpv1.ResCauseMandatoryIEMissing)
	}
	var u session.Update
	var okU, okC bool
	u.PeerTEIDU, okU = teidOf(m.TEIDDataI)
	u.PeerU, okC = gsnAddr(m.SGSNAddressForUserTraffic, 2152)
	if !okU || !okC {
		return g.reject(t, peerT, seq, gtpv1.ResCauseMandatoryIEIncorrect)
	}
	if u.PeerC, ok = gsnAddr(m.SGSNAddressForCPlane, gtpc.Port); !ok {
		return g.reject(t, peerT, seq, gtpv1.ResCauseMandatoryIEIncorrect)
	}
	if m.TEIDCPlane != nil {
		u.PeerTEIDC, _ = teidOf(m.TEIDCPlane)
	}
	if nsapi, err := m.NSAPI.NSAPI(); err != nil || nsapi != s.Bearer {
		return g.reject(t, peerT, seq, gtpv1.ResCauseNonExistent)
	}
	if m.Recovery != nil {
		if rc, err := m.Recovery.Recovery(); err == nil {
			g.ep.ObserveRecovery(gtpc.V1, r.Peer.Addr(), rc)
		}
	}
	ns, err := g.tab.UpdatePeer(s.TEID, u)
	if err != nil {
		if errors.Is(err, session.ErrNotFound) {
			return g.reject(t, 0, seq, gtpv1.ResCauseNonExistent)
		}
		g.cfg.Logger.Warn("ggsn: update PDP context", "imsi", s.IMSI, "err", err)
		return g.reject(t, peerT, seq, gtpv1.ResCauseSystemFailure)
	}
	g.accepted(t)
	// §7.3.4: the response goes to the SGSN's (possibly new) TEID.
	return message.NewUpdatePDPContextResponse(uint32(ns.PeerTEIDC), seq,
		g.acceptIEs(r, gtpv1.ResCauseRequestAccepted, ns, m.PCO, m.QoSProfile, false)...)
}

// deletePDP implements TS 29.060 §7.3.5/§7.3.6.
func (g *GGSN) deletePDP(r *gtpc.Request, m *message.DeletePDPContextRequest) gtpc.Message {
	const t = message.MsgTypeDeletePDPContextRequest
	seq := m.Sequence()
	s, ok := g.sessionOf(m.TEID())
	if !ok {
		return g.reject(t, 0, seq, gtpv1.ResCauseNonExistent)
	}
	if m.NSAPI == nil {
		return g.reject(t, uint32(s.PeerTEIDC), seq, gtpv1.ResCauseMandatoryIEMissing)
	}
	// With Teardown Ind set every context of the PDP address goes; we hold
	// only the primary, so the NSAPI must match unless tearing down.
	if nsapi, err := m.NSAPI.NSAPI(); err != nil || (nsapi != s.Bearer && (m.TeardownInd == nil || !m.TeardownInd.TeardownInd())) {
		return g.reject(t, uint32(s.PeerTEIDC), seq, gtpv1.ResCauseNonExistent)
	}
	if _, err := g.tab.Remove(s.TEID); err != nil {
		return g.reject(t, 0, seq, gtpv1.ResCauseNonExistent)
	}
	g.accepted(t)
	return message.NewDeletePDPContextResponse(uint32(s.PeerTEIDC), seq, ie.NewCause(gtpv1.ResCauseRequestAccepted))
}

// PeerRestarted implements gtpc.Handler: the contexts of a restarted SGSN
// are removed without signalling (TS 23.007).
func (g *GGSN) PeerRestarted(ev gtpc.PeerRestart) int {
	removed := g.tab.RemoveIf(func(s *session.Session) bool {
		return s.Kind == session.KindGGSN && s.PeerC.Addr() == ev.Peer
	})
	if g.cfg.OnPeerRestart != nil {
		g.cfg.OnPeerRestart(ev, removed)
	}
	return len(removed)
}

// DeleteResult counts the outcome of DeletePDPContexts.
type DeleteResult = session.DeleteResult

// DeletePDPContexts is the GGSN-initiated Delete PDP Context (TS 29.060
// §7.3.5, TS 23.060 §9.2.4.3) used by drain and failover: every GGSN
// session match accepts gets a Delete PDP Context Request with Teardown Ind
// set; the context is removed when the SGSN answers or the request times
// out. At most Config.DeleteConcurrency requests are in flight.
func (g *GGSN) DeletePDPContexts(ctx context.Context, match func(session.Session) bool) (DeleteResult, error) {
	res := g.tab.Delete(ctx, session.KindGGSN, match, g.cfg.DeleteConcurrency, func(ctx context.Context, s session.Session) error {
		_, err := g.ep.Request(ctx, gtpc.V1, s.Local, s.PeerC, func(seq uint32) ([]byte, error) {
			return message.Marshal(message.NewDeletePDPContextRequest(uint32(s.PeerTEIDC), uint16(seq),
				ie.NewTeardownInd(true), ie.NewNSAPI(s.Bearer)))
		})
		return err
	})
	g.m.networkDeletes.Add(float64(res.Selected))
	if res.Failed > 0 {
		return res, fmt.Errorf("ggsn: delete PDP context: %d of %d not answered", res.Failed, res.Selected)
	}
	return res, nil
}

// DeleteIMSI deletes every GGSN context of one subscriber.
func (g *GGSN) DeleteIMSI(ctx context.Context, imsi topology.IMSI) (DeleteResult, error) {
	return g.DeletePDPContexts(ctx, func(s session.Session) bool { return s.IMSI == imsi })
}

type metrics struct {
	responses      *prometheus.CounterVec
	malformed      prometheus.Counter
	unsupported    prometheus.Counter
	networkDeletes prometheus.Counter
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	const ns, sub = "rendezvous", "ggsn"
	m := &metrics{
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "responses_total",
			Help: "Responses sent, by request type and cause (TS 29.060 §7.7.1)."}, []string{"request", "cause"}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "malformed_requests_total",
			Help: "Requests that go-gtp could not decode (answered with cause 193)."}),
		unsupported: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "unsupported_requests_total",
			Help: "Requests of types the GGSN does not serve (dropped)."}),
		networkDeletes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "network_initiated_deletes_total",
			Help: "Contexts deleted by DeletePDPContexts (drain, failover)."}),
	}
	for _, c := range []prometheus.Collector{m.responses, m.malformed, m.unsupported, m.networkDeletes} {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("ggsn: register metrics: %w", err)
		}
	}
	return m, nil
}
