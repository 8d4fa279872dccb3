package pgw

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
	"github.com/wmnsk/go-gtp/gtpv2"
	"github.com/wmnsk/go-gtp/gtpv2/ie"
	"github.com/wmnsk/go-gtp/gtpv2/message"
)

// PGW is the S5/S8 PGW-C of a node. It serves Create Session, Delete
// Session and Modify Bearer from SGWs and sends Delete Bearer Requests for
// drain and failover.
type PGW struct {
	cfg       Config
	ep        *gtpc.Endpoint
	tab       *session.Table
	m         *metrics
	closeOnce sync.Once
}

// New validates cfg and registers the PGW as the endpoint's GTPv2 handler.
func New(cfg Config) (*PGW, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	p := &PGW{cfg: cfg, ep: cfg.Endpoint, tab: cfg.Sessions, m: m}
	p.ep.Handle(gtpc.V2, p)
	return p, nil
}

// Close unregisters the PGW from the endpoint. It owns no goroutine of its
// own; DeleteSessions runs on the caller's. Idempotent.
func (p *PGW) Close() error {
	p.closeOnce.Do(func() { p.ep.Handle(gtpc.V2, nil) })
	return nil
}

// HandleRequest implements gtpc.Handler.
func (p *PGW) HandleRequest(r *gtpc.Request) (gtpc.Message, error) {
	msg, err := message.Parse(r.Raw)
	if err == nil {
		err = checkIEs(r)
	}
	if err != nil {
		// TS 29.274 §7.7.1 and §7.7.3: a request that cannot be decoded gets
		// "Invalid Message Format" where a response type exists.
		p.m.malformed.Inc()
		return p.reject(r.Header.Type, 0, r.Header.Seq, gtpv2.CauseInvalidMessageFormat, nil), nil
	}
	var resp gtpc.Message
	switch m := msg.(type) {
	case *message.CreateSessionRequest:
		resp = p.createSession(r, m)
	case *message.DeleteSessionRequest:
		resp = p.deleteSession(r, m)
	case *message.ModifyBearerRequest:
		resp = p.modifyBearer(r, m)
	default:
		p.m.unsupported.Inc()
		return nil, nil
	}
	return resp, nil
}

// checkIEs walks the IEs of a GTPv2 message (TS 29.274 §8.2: type,
// length, instance, value): go-gtp accepts some bodies that are not a
// sequence of IEs, e.g. a single stray octet.
func checkIEs(r *gtpc.Request) error {
	off := 8
	if r.Header.HasTEID {
		off = 12
	}
	p := r.Raw[off:r.Header.Len]
	for len(p) > 0 {
		if len(p) < 4 {
			return errors.New("pgw: truncated IE header")
		}
		l := 4 + (int(p[1])<<8 | int(p[2]))
		if l > len(p) {
			return errors.New("pgw: IE beyond the message")
		}
		p = p[l:]
	}
	return nil
}

// reject builds the response of request type t with a rejection cause.
func (p *PGW) reject(t uint8, teid, seq uint32, cause uint8, offending *ie.IE) gtpc.Message {
	c := ie.NewCause(cause, 0, 0, 0, offending)
	p.m.responses.WithLabelValues(strconv.Itoa(int(t)), strconv.Itoa(int(cause))).Inc()
	switch t {
	case message.MsgTypeCreateSessionRequest:
		return message.NewCreateSessionResponse(teid, seq, c)
	case message.MsgTypeDeleteSessionRequest:
		return message.NewDeleteSessionResponse(teid, seq, c)
	case message.MsgTypeModifyBearerRequest:
		return message.NewModifyBearerResponse(teid, seq, c)
	}
	return nil
}

func (p *PGW) accepted(t uint8) {
	p.m.responses.WithLabelValues(strconv.Itoa(int(t)), strconv.Itoa(int(gtpv2.CauseRequestAccepted))).Inc()
}

// missing names an absent mandatory IE in the Cause (TS 29.274 §8.4:
// offending IE with length and instance zero).
func missing(t uint8) *ie.IE { return &ie.IE{Type: t} }

// fteid decodes an IPv4 F-TEID (TS 29.274 §8.22).
func fteid(i *ie.IE, port uint16) (breakout.TEID, netip.AddrPort, bool) {
	if i == nil {
		return 0, netip.AddrPort{}, false
	}
	teid, err := i.TEID()
	if err != nil || teid == 0 {
		return 0, netip.AddrPort{}, false
	}
	ip, err := i.IPv4()
	if err != nil {
		return 0, netip.AddrPort{}, false
	}
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return 0, netip.AddrPort{}, false
	}
	return breakout.TEID(teid), netip.AddrPortFrom(a, port), true
}

// createSession implements TS 29.274 §7.2.1/§7.2.2 for the PGW (S5/S8).
func (p *PGW) createSession(r *gtpc.Request, m *message.CreateSessionRequest) gtpc.Message {
	const t = message.MsgTypeCreateSessionRequest
	seq := m.Sequence()
	// The sender F-TEID first: its TEID addresses our response, even a
	// rejection (peers cannot match TEID 0, gtp.md §2.6).
	if m.SenderFTEIDC == nil {
		return p.reject(t, 0, seq, gtpv2.CauseMandatoryIEMissing, missing(ie.FullyQualifiedTEID))
	}
	sgwTEIDC, sgwC, ok := fteid(m.SenderFTEIDC, gtpc.Port)
	if !ok {
		teid, _ := m.SenderFTEIDC.TEID()
		return p.reject(t, teid, seq, gtpv2.CauseMandatoryIEIncorrect, missing(ie.FullyQualifiedTEID))
	}
	peerT := uint32(sgwTEIDC)
	switch {
	case m.IMSI == nil:
		return p.reject(t, peerT, seq, gtpv2.CauseMandatoryIEMissing, missing(ie.IMSI))
	case m.RATType == nil:
		return p.reject(t, peerT, seq, gtpv2.CauseMandatoryIEMissing, missing(ie.RATType))
	case m.APN == nil:
		return p.reject(t, peerT, seq, gtpv2.CauseMandatoryIEMissing, missing(ie.AccessPointName))
	case len(m.BearerContextsToBeCreated) == 0:
		return p.reject(t, peerT, seq, gtpv2.CauseMandatoryIEMissing, missing(ie.BearerContext))
	}
	imsiStr, err := m.IMSI.IMSI()
	if err != nil {
		return p.reject(t, peerT, seq, gtpv2.CauseMandatoryIEIncorrect, missing(ie.IMSI))
	}
	imsi, err := topology.ParseIMSI(imsiStr)
	if err != nil {
		return p.reject(t, peerT, seq, gtpv2.CauseMandatoryIEIncorrect, missing(ie.IMSI))
	}
	apn, err := m.APN.AccessPointName()
	if err != nil || apn == "" {
		return p.reject(t, peerT, seq, gtpv2.CauseMandatoryIEIncorrect, missing(ie.AccessPointName))
	}
	// Default bearer: EBI (5–15, TS 24.007 §11.2.3.1.5), Bearer QoS and the
	// SGW S5/S8-U F-TEID (instance 2, Table 7.2.1-2).
	var ebi uint8
	var qos *ie.IE
	var sgwTEIDU breakout.TEID
	var sgwU netip.AddrPort
	haveU := false
	for _, ch := range m.BearerContextsToBeCreated[0].ChildIEs {
		switch ch.Type {
		case ie.EPSBearerID:
			if v, err := ch.EPSBearerID(); err == nil {
				ebi = v
			}
		case ie.BearerQoS:
			qos = ch
		case ie.FullyQualifiedTEID:
			if ch.Instance() == 2 {
				if sgwTEIDU, sgwU, haveU = fteid(ch, 2152); !haveU {
					return p.reject(t, peerT, seq, gtpv2.CauseMandatoryIEIncorrect, missing(ie.FullyQualifiedTEID))
				}
			}
		}
	}
	switch {
	case ebi == 0:
		return p.reject(t, peerT, seq, gtpv2.CauseMandatoryIEMissing, missing(ie.EPSBearerID))
	case ebi < 5 || ebi > 15:
		return p.reject(t, peerT, seq, gtpv2.CauseMandatoryIEIncorrect, missing(ie.EPSBearerID))
	case qos == nil:
		return p.reject(t, peerT, seq, gtpv2.CauseMandatoryIEMissing, missing(ie.BearerQoS))
	case !haveU:
		return p.reject(t, peerT, seq, gtpv2.CauseMandatoryIEMissing, missing(ie.FullyQualifiedTEID))
	}
	pdnType := gtpv2.PDNTypeIPv4
	if m.PDNType != nil {
		if v, err := m.PDNType.PDNType(); err == nil {
			pdnType = v
		} else {
			return p.reject(t, peerT, seq, gtpv2.CauseMandatoryIEIncorrect, missing(ie.PDNType))
		}
	}
	// A changed Recovery of the SGW means it restarted: its old sessions go
	// before this one is made (TS 23.007).
	if m.Recovery != nil {
		if rc, err := m.Recovery.Recovery(); err == nil {
			p.ep.ObserveRecovery(gtpc.V2, r.Peer.Addr(), rc)
		}
	}
	// The region must serve the APN at all (78), then the subscriber must
	// be known (96), active (92) and subscribed to the APN (93).
	if !p.tab.HasAPN(apn) {
		return p.reject(t, peerT, seq, gtpv2.CauseMissingOrUnknownAPN, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.LookupTimeout)
	sub, err := p.cfg.Subscribers.Subscriber(ctx, imsi)
	cancel()
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return p.reject(t, peerT, seq, gtpv2.CauseIMSIIMEINotKnown, nil)
	case err != nil:
		p.cfg.Logger.Warn("pgw: subscriber lookup", "imsi", imsi, "err", err)
		return p.reject(t, peerT, seq, gtpv2.CauseSystemFailure, nil)
	case sub.Status != registry.StatusActive:
		return p.reject(t, peerT, seq, gtpv2.CauseUserAuthenticationFailed, nil)
	}
	prof, ok := session.ProfileAPN(sub, apn)
	if !ok {
		return p.reject(t, peerT, seq, gtpv2.CauseAPNAccessDeniedNoSubscription, nil)
	}
	// PDN type (TS 23.401 §5.3.1.1): our pools are IPv4; an IPv4v6 request
	// gets IPv4 with cause 18, IPv6 or non-IP only is refused (83).
	cause := gtpv2.CauseRequestAccepted
	switch pdnType {
	case gtpv2.PDNTypeIPv4:
	case gtpv2.PDNTypeIPv4v6:
		cause = gtpv2.CauseNewPDNTypeDueToNetworkPreference
	default:
		return p.reject(t, peerT, seq, gtpv2.CausePreferredPDNTypeNotSupported, nil)
	}
	ambrUp, ambrDown := prof.AMBRUplink/1000, prof.AMBRDownlink/1000 // bps → kbps (§8.7)
	if ambrUp == 0 && ambrDown == 0 && m.AMBR != nil {
		ambrUp, _ = m.AMBR.AggregateMaximumBitRateUp()
		ambrDown, _ = m.AMBR.AggregateMaximumBitRateDown()
	}
	qci, _ := qos.QCILabel()
	arp, _ := qos.PriorityLevel()
	s, err := p.tab.Create(session.Params{
		Kind: session.KindPGW, IMSI: imsi, Bearer: ebi, APN: apn,
		PeerC: sgwC, PeerU: sgwU, Local: r.Local.Addr(), PeerTEIDC: sgwTEIDC, PeerTEIDU: sgwTEIDU,
		AMBRUp: ambrUp, AMBRDown: ambrDown, QCI: qci, ARP: arp,
	})
	if err != nil {
		c := gtpv2.CauseSystemFailure
		switch {
		case errors.Is(err, session.ErrNoPool):
			c = gtpv2.CauseMissingOrUnknownAPN
		case errors.Is(err, session.ErrPoolExhausted):
			c = gtpv2.CauseAllDynamicAddressesAreOccupied
		case errors.Is(err, session.ErrNoTEID):
			c = gtpv2.CauseNoResourcesAvailable
		}
		p.cfg.Logger.Warn("pgw: create session", "imsi", imsi, "apn", apn, "err", err)
		return p.reject(t, peerT, seq, c, nil)
	}
	local := r.Local.Addr().String()
	user := local
	if p.cfg.UserPlane.IsValid() {
		user = p.cfg.UserPlane.String()
	}
	ies := []*ie.IE{
		ie.NewCause(cause, 0, 0, 0, nil),
		ie.NewFullyQualifiedTEID(gtpv2.IFTypeS5S8PGWGTPC, uint32(s.TEID), local, "").WithInstance(1),
		ie.NewPDNAddressAllocation(s.UE.String()),
		ie.NewAPNRestriction(gtpv2.APNRestrictionPublic1),
		ie.NewAggregateMaximumBitRate(s.AMBRUplink, s.AMBRDownlink),
	}
	// PCO / ePCO with DNS (TS 29.274 §8.13, §8.128; TS 24.008 §10.5.6.3).
	if m.EPCO != nil {
		if pco := gtpc.AnswerPCO(m.EPCO.Payload, p.cfg.DNS, true); pco != nil {
			ies = append(ies, ie.New(ie.ExtendedProtocolConfigurationOptions, 0, pco))
		}
	} else if m.PCO != nil {
		if pco := gtpc.AnswerPCO(m.PCO.Payload, p.cfg.DNS, false); pco != nil {
			ies = append(ies, ie.New(ie.ProtocolConfigurationOptions, 0, pco))
		}
	}
	ies = append(ies,
		ie.NewBearerContext(
			ie.NewCause(gtpv2.CauseRequestAccepted, 0, 0, 0, nil),
			ie.NewEPSBearerID(ebi),
			ie.NewFullyQualifiedTEID(gtpv2.IFTypeS5S8PGWGTPU, uint32(s.TEID), user, "").WithInstance(2),
			ie.New(ie.BearerQoS, 0, qos.Payload),
			ie.NewChargingID(s.ChargingID),
		),
		ie.NewRecovery(p.ep.RestartCounter()),
	)
	p.accepted(t)
	return message.NewCreateSessionResponse(peerT, seq, ies...)
}

// sessionOf finds the PGW session a request addresses by its header TEID.
func (p *PGW) sessionOf(teid uint32) (session.Session, bool) {
	s, ok := p.tab.ByTEID(breakout.TEID(teid))
	if !ok || s.Kind != session.KindPGW {
		return session.Session{}, false
	}
	return s, true
}

// deleteSession implements TS 29.274 §7.2.9.1/§7.2.10.1.
func (p *PGW) deleteSession(r *gtpc.Request, m *message.DeleteSessionRequest) gtpc.Message {
	const t = message.MsgTypeDeleteSessionRequest
	s, ok := p.sessionOf(m.TEID())
	if !ok {
		// §7.2.10.1: unknown TEID → Context Not Found, TEID 0.
		return p.reject(t, 0, m.Sequence(), gtpv2.CauseContextNotFound, nil)
	}
	if m.LinkedEBI != nil {
		if ebi, err := m.LinkedEBI.EPSBearerID(); err == nil && ebi != s.Bearer {
			return p.reject(t, uint32(s.PeerTEIDC), m.Sequence(), gtpv2.CauseContextNotFound, nil)
		}
	}
	if _, err := p.tab.Remove(s.TEID); err != nil {
		return p.reject(t, uint32(s.PeerTEIDC), m.Sequence(), gtpv2.CauseContextNotFound, nil)
	}
	p.accepted(t)
	return message.NewDeleteSessionResponse(uint32(s.PeerTEIDC), m.Sequence(),
		ie.NewCause(gtpv2.CauseRequestAccepted, 0, 0, 0, nil))
}

// modifyBearer implements TS 29.274 §7.2.7/§7.2.8 on S5/S8: SGW relocation
// (new Sender F-TEID for C) and new S5/S8-U SGW F-TEIDs (instance 1 in
// Bearer Context to be modified, Table 7.2.7-2) re-install the tunnel.
func (p *PGW) modifyBearer(r *gtpc.Request, m *message.ModifyBearerRequest) gtpc.Message {
	const t = message.MsgTypeModifyBearerRequest
	s, ok := p.sessionOf(m.TEID())
	if !ok {
		return p.reject(t, 0, m.Sequence(), gtpv2.CauseContextNotFound, nil)
	}
	var u session.Update
	if m.SenderFTEIDC != nil {
		teid, addr, ok := fteid(m.SenderFTEIDC, gtpc.Port)
		if !ok {
			return p.reject(t, uint32(s.PeerTEIDC), m.Sequence(), gtpv2.CauseMandatoryIEIncorrect, missing(ie.FullyQualifiedTEID))
		}
		u.PeerC, u.PeerTEIDC = addr, teid
	}
	for _, bc := range m.BearerContextsToBeModified {
		var ebi uint8
		var teid breakout.TEID
		var addr netip.AddrPort
		have := false
		for _, ch := range bc.ChildIEs {
			switch ch.Type {
			case ie.EPSBearerID:
				ebi, _ = ch.EPSBearerID()
			case ie.FullyQualifiedTEID:
				if ch.Instance() == 1 {
					if teid, addr, have = fteid(ch, 2152); !have {
						return p.reject(t, uint32(s.PeerTEIDC), m.Sequence(), gtpv2.CauseMandatoryIEIncorrect, missing(ie.FullyQualifiedTEID))
					}
				}
			}
		}
		if ebi == 0 {
			return p.reject(t, uint32(s.PeerTEIDC), m.Sequence(), gtpv2.CauseMandatoryIEMissing, missing(ie.EPSBearerID))
		}
		if ebi != s.Bearer {
			return p.reject(t, uint32(s.PeerTEIDC), m.Sequence(), gtpv2.CauseContextNotFound, nil)
		}
		if have {
			u.PeerU, u.PeerTEIDU = addr, teid
		}
	}
	if m.Recovery != nil {
		if rc, err := m.Recovery.Recovery(); err == nil {
			p.ep.ObserveRecovery(gtpc.V2, r.Peer.Addr(), rc)
		}
	}
	ns, err := p.tab.UpdatePeer(s.TEID, u)
	if err != nil {
		if errors.Is(err, session.ErrNotFound) {
			return p.reject(t, 0, m.Sequence(), gtpv2.CauseContextNotFound, nil)
		}
		p.cfg.Logger.Warn("pgw: modify bearer", "imsi", s.IMSI, "err", err)
		return p.reject(t, uint32(s.PeerTEIDC), m.Sequence(), gtpv2.CauseSystemFailure, nil)
	}
	p.accepted(t)
	// The response goes to the TEID the SGW had when it sent the request.
	return message.NewModifyBearerResponse(uint32(s.PeerTEIDC), m.Sequence(),
		ie.NewCause(gtpv2.CauseRequestAccepted, 0, 0, 0, nil),
		ie.NewBearerContext(
			ie.NewCause(gtpv2.CauseRequestAccepted, 0, 0, 0, nil),
			ie.NewEPSBearerID(ns.Bearer),
			ie.NewChargingID(ns.ChargingID),
		),
		ie.NewRecovery(p.ep.RestartCounter()),
	)
}

// PeerRestarted implements gtpc.Handler: the sessions of a restarted SGW
// are removed locally, without signalling (TS 23.007).
func (p *PGW) PeerRestarted(ev gtpc.PeerRestart) int {
	removed := p.tab.RemoveIf(func(s *session.Session) bool {
		return s.Kind == session.KindPGW && s.PeerC.Addr() == ev.Peer
	})
	if p.cfg.OnPeerRestart != nil {
		p.cfg.OnPeerRestart(ev, removed)
	}
	return len(removed)
}

// DeleteResult counts the outcome of DeleteSessions.
type DeleteResult = session.DeleteResult

// DeleteSessions is the PGW-initiated bearer deactivation used by drain
// and failover (TS 29.274 §7.2.9.2, TS 23.401 §5.4.4.1): for every PGW
// session match accepts, a Delete Bearer Request with the Linked EBI (all
// bearers of the PDN connection) and, if cause is not 0, a Cause (e.g.
// gtpv2.CauseReactivationRequested = 8 makes the UE re-attach) goes to the
// session's SGW; the session is removed when the SGW answers or the request
// times out. At most Config.DeleteConcurrency requests are in flight; the
// call returns when all are done or ctx ends.
func (p *PGW) DeleteSessions(ctx context.Context, match func(session.Session) bool, cause uint8) (DeleteResult, error) {
	res := p.tab.Delete(ctx, session.KindPGW, match, p.cfg.DeleteConcurrency,
		func(ctx context.Context, s session.Session) error { return p.deleteBearer(ctx, s, cause) })
	p.m.networkDeletes.Add(float64(res.Selected))
	if res.Failed > 0 {
		return res, fmt.Errorf("pgw: delete bearer: %d of %d not answered", res.Failed, res.Selected)
	}
	return res, nil
}

// DeleteIMSI deletes every PGW session of one subscriber (DeleteSessions).
func (p *PGW) DeleteIMSI(ctx context.Context, imsi topology.IMSI, cause uint8) (DeleteResult, error) {
	return p.DeleteSessions(ctx, func(s session.Session) bool { return s.IMSI == imsi }, cause)
}

func (p *PGW) deleteBearer(ctx context.Context, s session.Session, cause uint8) error {
	resp, err := p.ep.Request(ctx, gtpc.V2, s.Local, s.PeerC, func(seq uint32) ([]byte, error) {
		ies := []*ie.IE{ie.NewEPSBearerID(s.Bearer)}
		if cause != 0 {
			ies = append(ies, ie.NewCause(cause, 0, 0, 0, nil))
		}
		return message.Marshal(message.NewDeleteBearerRequest(uint32(s.PeerTEIDC), seq, ies...))
	})
	if err != nil {
		return fmt.Errorf("pgw: delete bearer %s ebi %d: %w", s.IMSI, s.Bearer, err)
	}
	if m, err := message.Parse(resp); err == nil {
		if dbr, ok := m.(*message.DeleteBearerResponse); ok && dbr.Cause != nil {
			if c, err := dbr.Cause.Cause(); err == nil {
				p.m.dbResponses.WithLabelValues(strconv.Itoa(int(c))).Inc()
			}
		}
	}
	return nil
}

type metrics struct {
	responses      *prometheus.CounterVec
	dbResponses    *prometheus.CounterVec
	malformed      prometheus.Counter
	unsupported    prometheus.Counter
	networkDeletes prometheus.Counter
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	const ns, sub = "rendezvous", "pgw"
	m := &metrics{
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "responses_total",
			Help: "Responses sent, by request type and cause (TS 29.274 §8.4)."}, []string{"request", "cause"}),
		dbResponses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "delete_bearer_responses_total",
			Help: "Delete Bearer Responses received, by cause."}, []string{"cause"}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "malformed_requests_total",
			Help: "Requests that go-gtp could not decode (answered with cause 65)."}),
		unsupported: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "unsupported_requests_total",
			Help: "Requests of types the PGW does not serve (dropped)."}),
		networkDeletes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "network_initiated_deletes_total",
			Help: "Sessions deleted by DeleteSessions (drain, failover)."}),
	}
	for _, c := range []prometheus.Collector{m.responses, m.dbResponses, m.malformed, m.unsupported, m.networkDeletes} {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("pgw: register metrics: %w", err)
		}
	}
	return m, nil
}
