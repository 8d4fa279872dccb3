package roamsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
	"github.com/wmnsk/go-gtp/gtpv1"
	v1ie "github.com/wmnsk/go-gtp/gtpv1/ie"
	v1msg "github.com/wmnsk/go-gtp/gtpv1/message"
	"github.com/wmnsk/go-gtp/gtpv2"
	"github.com/wmnsk/go-gtp/gtpv2/ie"
	"github.com/wmnsk/go-gtp/gtpv2/message"
)

// ErrTimeout is returned when a peer did not answer a request in time
// (GTP: after N3 retransmissions every T3; Diameter: within the timeout).
var ErrTimeout = errors.New("roamsim: timeout")

// GTPCauseError is a GTP response whose Cause is not "accepted".
type GTPCauseError struct {
	Msg   string // "CSResp", "DSResp", "CreatePDPResp" …
	Cause uint8
}

func (e *GTPCauseError) Error() string { return fmt.Sprintf("roamsim: %s cause %d", e.Msg, e.Cause) }

// gtpcHandler receives peer-initiated GTP-C requests (answered already).
type gtpcHandler interface {
	// deleteBearer: the PGW deleted the default bearer of the session whose
	// SGW C-TEID is teid; cause as in the request (8 = reactivation requested).
	deleteBearer(teid uint32, cause uint8)
	// deletePDP: the GGSN deleted the PDP context whose SGSN C-TEID is teid.
	deletePDP(teid uint32, teardown bool)
	// peerTEID maps our C-TEID to the peer's (0 if unknown), for the
	// header of our answers to the peer's requests.
	peerTEID(teid uint32) uint32
}

// gtpcEndpoint is the SGW/SGSN GTP-C socket: one UDP socket, v1/v2 demux,
// request/response correlation by sequence number, T3/N3 retransmission.
type gtpcEndpoint struct {
	conn    *net.UDPConn
	t3      time.Duration
	n3      int
	restart uint8
	log     *slog.Logger
	h       gtpcHandler

	seq2 atomic.Uint32
	seq1 atomic.Uint32

	mu    sync.Mutex
	pend2 map[uint32]chan message.Message
	pend1 map[uint16]chan v1msg.Message

	retransmits atomic.Uint64
	malformed   atomic.Uint64
}

func newGTPCEndpoint(laddr netip.AddrPort, t3 time.Duration, n3 int, restart uint8, log *slog.Logger, h gtpcHandler) (*gtpcEndpoint, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(laddr))
	if err != nil {
		return nil, fmt.Errorf("roamsim: gtp-c listen %v: %w", laddr, err)
	}
	_ = c.SetReadBuffer(4 << 20)
	e := &gtpcEndpoint{conn: c, t3: t3, n3: n3, restart: restart, log: log, h: h,
		pend2: map[uint32]chan message.Message{}, pend1: map[uint16]chan v1msg.Message{}}
	e.seq2.Store(uint32(time.Now().UnixNano()) & 0x3fffff)
	e.seq1.Store(uint32(time.Now().UnixNano()) & 0x7fff)
	return e, nil
}

func (e *gtpcEndpoint) localAddr() netip.AddrPort {
	return e.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// serve reads until the socket is closed.
func (e *gtpcEndpoint) serve() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := e.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			e.log.Debug("roamsim: gtp-c read", "err", err)
			continue
		}
		if n < 8 {
			e.malformed.Add(1)
			continue
		}
		// Parsed messages alias their input and are handed to other
		// goroutines: parse a copy, never the read buffer.
		b := append([]byte(nil), buf[:n]...)
		switch b[0] >> 5 {
		case 2:
			e.handle2(b, from)
		case 1:
			e.handle1(b, from)
		default:
			e.malformed.Add(1)
		}
	}
}

func safeParse2(b []byte) (m message.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("roamsim: gtpv2 parse panic: %v", r)
		}
	}()
	return message.Parse(b)
}

func safeParse1(b []byte) (m v1msg.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("roamsim: gtpv1 parse panic: %v", r)
		}
	}()
	return v1msg.Parse(b)
}

func (e *gtpcEndpoint) handle2(b []byte, from netip.AddrPort) {
	m, err := safeParse2(b)
	if err != nil {
		e.malformed.Add(1)
		e.log.Debug("roamsim: bad GTPv2 message", "from", from, "err", err)
		return
	}
	switch m.MessageType() {
	case message.MsgTypeEchoRequest:
		e.send2(message.NewEchoResponse(m.Sequence(), ie.NewRecovery(e.restart)), from)
	case message.MsgTypeDeleteBearerRequest:
		req, ok := m.(*message.DeleteBearerRequest)
		if !ok {
			e.malformed.Add(1)
			return
		}
		var cause uint8
		if req.Cause != nil {
			cause, _ = req.Cause.Cause()
		}
		peer := e.h.peerTEID(m.TEID())
		c := gtpv2.CauseRequestAccepted
		if peer == 0 {
			c = gtpv2.CauseContextNotFound
		}
		e.send2(message.NewDeleteBearerResponse(peer, m.Sequence(), ie.NewCause(c, 0, 0, 0, nil)), from)
		e.h.deleteBearer(m.TEID(), cause)
	case message.MsgTypeEchoResponse, message.MsgTypeCreateSessionResponse, message.MsgTypeDeleteSessionResponse,
		message.MsgTypeModifyBearerResponse:
		e.mu.Lock()
		ch, ok := e.pend2[m.Sequence()]
		delete(e.pend2, m.Sequence())
		e.mu.Unlock()
		if ok {
			ch <- m
		}
	default:
		e.log.Debug("roamsim: unhandled GTPv2 message", "type", m.MessageTypeName(), "from", from)
	}
}

func (e *gtpcEndpoint) handle1(b []byte, from netip.AddrPort) {
	if b[0]&0x10 == 0 { // GTP' or garbage
		e.malformed.Add(1)
		return
	}
	m, err := safeParse1(b)
	if err != nil {
		e.malformed.Add(1)
		e.log.Debug("roamsim: bad GTPv1 message", "from", from, "err", err)
		return
	}
	switch m.MessageType() {
	case v1msg.MsgTypeEchoRequest:
		e.send1(v1msg.NewEchoResponse(m.Sequence(), v1ie.NewRecovery(e.restart)), from)
	case v1msg.MsgTypeDeletePDPContextRequest:
		req, ok := m.(*v1msg.DeletePDPContextRequest)
		if !ok {
			e.malformed.Add(1)
			return
		}
		teardown := false
		if req.TeardownInd != nil && len(req.TeardownInd.Payload) > 0 {
			teardown = req.TeardownInd.Payload[0]&1 == 1
		}
		peer := e.h.peerTEID(m.TEID())
		c := gtpv1.ResCauseRequestAccepted
		if peer == 0 {
			c = gtpv1.ResCauseNonExistent
		}
		e.send1(v1msg.NewDeletePDPContextResponse(peer, m.Sequence(), v1ie.NewCause(c)), from)
		e.h.deletePDP(m.TEID(), teardown)
	case v1msg.MsgTypeEchoResponse, v1msg.MsgTypeCreatePDPContextResponse, v1msg.MsgTypeDeletePDPContextResponse:
		e.mu.Lock()
		ch, ok := e.pend1[m.Sequence()]
		delete(e.pend1, m.Sequence())
		e.mu.Unlock()
		if ok {
			ch <- m
		}
	default:
		e.log.Debug("roamsim: unhandled GTPv1 message", "type", m.MessageTypeName(), "from", from)
	}
}

type marshaler interface {
	MarshalLen() int
	MarshalTo([]byte) error
}

func marshal(m marshaler) ([]byte, error) {
	b := make([]byte, m.MarshalLen())
	if err := m.MarshalTo(b); err != nil {
		return nil, err
	}
	return b, nil
}

func (e *gtpcEndpoint) send2(m message.Message, to netip.AddrPort) {
	if b, err := marshal(m); err == nil {
		_, _ = e.conn.WriteToUDPAddrPort(b, to)
	}
}

func (e *gtpcEndpoint) send1(m v1msg.Message, to netip.AddrPort) {
	if b, err := marshal(m); err == nil {
		_, _ = e.conn.WriteToUDPAddrPort(b, to)
	}
}

// request2 sends m (its sequence number is set here) and waits for the
// response with the same sequence, retransmitting every T3 up to N3 times
// (TS 29.274 §7.6).
func (e *gtpcEndpoint) request2(ctx context.Context, m message.Message, to netip.AddrPort) (message.Message, error) {
	seq := e.seq2.Add(1) & 0x7fffff
	m.SetSequenceNumber(seq)
	b, err := marshal(m)
	if err != nil {
		return nil, fmt.Errorf("roamsim: marshal %s: %w", m.MessageTypeName(), err)
	}
	ch := make(chan message.Message, 1)
	e.mu.Lock()
	e.pend2[seq] = ch
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.pend2, seq)
		e.mu.Unlock()
	}()
	rsp, err := await(ctx, e, b, to, ch)
	if err != nil {
		return nil, fmt.Errorf("roamsim: %s to %v: %w", m.MessageTypeName(), to, err)
	}
	return rsp, nil
}

// request1 is request2 for GTPv1-C (16-bit sequence numbers).
func (e *gtpcEndpoint) request1(ctx context.Context, m v1msg.Message, to netip.AddrPort) (v1msg.Message, error) {
	seq := uint16(e.seq1.Add(1))
	m.SetSequenceNumber(seq)
	b, err := marshal(m)
	if err != nil {
		return nil, fmt.Errorf("roamsim: marshal %s: %w", m.MessageTypeName(), err)
	}
	ch := make(chan v1msg.Message, 1)
	e.mu.Lock()
	e.pend1[seq] = ch
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.pend1, seq)
		e.mu.Unlock()
	}()
	rsp, err := await(ctx, e, b, to, ch)
	if err != nil {
		return nil, fmt.Errorf("roamsim: %s to %v: %w", m.MessageTypeName(), to, err)
	}
	return rsp, nil
}

// await transmits b and waits on ch, retransmitting every T3, N3 times.
func await[T any](ctx context.Context, e *gtpcEndpoint, b []byte, to netip.AddrPort, ch <-chan T) (T, error) {
	var zero T
	t := time.NewTimer(e.t3)
	defer t.Stop()
	for try := 0; try <= e.n3; try++ {
		if try > 0 {
			e.retransmits.Add(1)
		}
		if _, err := e.conn.WriteToUDPAddrPort(b, to); err != nil {
			return zero, fmt.Errorf("write: %w", err)
		}
		t.Reset(e.t3)
		select {
		case r := <-ch:
			return r, nil
		case <-t.C:
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}
	return zero, fmt.Errorf("%w: no response after %d transmissions every %v", ErrTimeout, e.n3+1, e.t3)
}

func (e *gtpcEndpoint) close() error { return e.conn.Close() }

// ---- S8 SGW procedures

// session is one PDN connection (S8) or PDP context (Gp) as the visited
// side sees it.
type session struct {
	Peer     netip.AddrPort // PGW/GGSN GTP-C
	LocalC   uint32         // our C-TEID
	PeerC    uint32         // PGW/GGSN C-TEID
	LocalU   uint32         // our U-TEID
	PeerU    uint32
	PeerUAdr netip.Addr // PGW/GGSN U address
	UE       netip.Addr // PAA / EUA
	EBI      uint8
	Recovery int // peer restart counter, -1 if absent
}

type csrParams struct {
	imsi, msisdn, apn string
	visited           topology.PLMN
	localC, localU    uint32
	sgwC, sgwU        netip.Addr
}

// createSession runs CSR → CSResp against pgw (its GTP-C address:port).
func (e *gtpcEndpoint) createSession(ctx context.Context, pgw netip.AddrPort, p csrParams) (session, error) {
	mcc, mnc := string(p.visited.MCC), p.visited.MNC
	ies := []*ie.IE{
		ie.NewIMSI(p.imsi),
	}
	if p.msisdn != "" {
		ies = append(ies, ie.NewMSISDN(p.msisdn))
	}
	ies = append(ies,
		ie.NewUserLocationInformationStruct(nil, nil, nil, ie.NewTAI(mcc, mnc, 0x0001), ie.NewECGI(mcc, mnc, 0x00101), nil, nil, nil),
		ie.NewServingNetwork(mcc, mnc),
		ie.NewRATType(gtpv2.RATTypeEUTRAN),
		ie.NewFullyQualifiedTEID(gtpv2.IFTypeS5S8SGWGTPC, p.localC, p.sgwC.String(), ""),
		ie.NewAccessPointName(p.apn),
		ie.NewSelectionMode(gtpv2.SelectionModeMSorNetworkProvidedAPNSubscribedVerified),
		ie.NewPDNType(gtpv2.PDNTypeIPv4),
		ie.NewPDNAddressAllocation("0.0.0.0"),
		ie.NewAPNRestriction(gtpv2.APNRestrictionNoExistingContextsorRestriction),
		ie.NewAggregateMaximumBitRate(1000, 1000), // kbps
		ie.NewBearerContext(
			ie.NewEPSBearerID(5),
			ie.NewFullyQualifiedTEID(gtpv2.IFTypeS5S8SGWGTPU, p.localU, p.sgwU.String(), "").WithInstance(2),
			ie.NewBearerQoS(1, 9, 1, 9, 0, 0, 0, 0),
		),
		ie.NewRecovery(e.restart),
	)
	rsp, err := e.request2(ctx, message.NewCreateSessionRequest(0, 0, ies...), pgw)
	if err != nil {
		return session{}, err
	}
	r, ok := rsp.(*message.CreateSessionResponse)
	if !ok {
		return session{}, &FormatError{Msg: "CSResp", Detail: "response of type " + rsp.MessageTypeName()}
	}
	if r.Cause == nil {
		return session{}, &FormatError{Msg: "CSResp", Detail: "no Cause"}
	}
	cause, err := r.Cause.Cause()
	if err != nil {
		return session{}, &FormatError{Msg: "CSResp", Detail: "Cause: " + err.Error()}
	}
	if cause < gtpv2.CauseRequestAccepted || cause > 19 {
		return session{}, &GTPCauseError{Msg: "CSResp", Cause: cause}
	}
	s := session{Peer: pgw, LocalC: p.localC, LocalU: p.localU, EBI: 5, Recovery: -1}
	if r.TEID() != p.localC {
		return session{}, &FormatError{Msg: "CSResp", Detail: fmt.Sprintf("header TEID %#x, want our C-TEID %#x", r.TEID(), p.localC)}
	}
	if r.PGWS5S8FTEIDC == nil {
		return session{}, &FormatError{Msg: "CSResp", Detail: "no PGW S5/S8 C F-TEID (instance 1)"}
	}
	f, err := r.PGWS5S8FTEIDC.FullyQualifiedTEID()
	if err != nil {
		return session{}, &FormatError{Msg: "CSResp", Detail: "PGW C F-TEID: " + err.Error()}
	}
	s.PeerC = f.TEIDGREKey
	if r.PAA == nil {
		return session{}, &FormatError{Msg: "CSResp", Detail: "no PAA"}
	}
	ip, err := r.PAA.IP()
	if err != nil {
		return session{}, &FormatError{Msg: "CSResp", Detail: "PAA: " + err.Error()}
	}
	ue, ok := netip.AddrFromSlice(ip.To4())
	if !ok || ue.IsUnspecified() {
		return session{}, &FormatError{Msg: "CSResp", Detail: fmt.Sprintf("PAA %v is not a usable IPv4 address", ip)}
	}
	s.UE = ue
	if len(r.BearerContextsCreated) == 0 || r.BearerContextsCreated[0] == nil {
		return session{}, &FormatError{Msg: "CSResp", Detail: "no Bearer Context created"}
	}
	for _, ch := range r.BearerContextsCreated[0].ChildIEs {
		if ch == nil {
			continue
		}
		switch ch.Type {
		case ie.Cause:
			if c, err := ch.Cause(); err == nil && (c < gtpv2.CauseRequestAccepted || c > 19) {
				return session{}, &GTPCauseError{Msg: "CSResp bearer", Cause: c}
			}
		case ie.EPSBearerID:
			if v, err := ch.EPSBearerID(); err == nil {
				s.EBI = v
			}
		case ie.FullyQualifiedTEID:
			if ch.Instance() != 2 {
				continue
			}
			f, err := ch.FullyQualifiedTEID()
			if err != nil {
				return session{}, &FormatError{Msg: "CSResp", Detail: "PGW U F-TEID: " + err.Error()}
			}
			s.PeerU = f.TEIDGREKey
			if a, ok := netip.AddrFromSlice(f.IPv4Address.To4()); ok {
				s.PeerUAdr = a
			}
		}
	}
	if !s.PeerUAdr.IsValid() {
		return session{}, &FormatError{Msg: "CSResp", Detail: "no PGW S5/S8-U F-TEID (instance 2) with an IPv4 address"}
	}
	if r.Recovery != nil {
		if v, err := r.Recovery.Recovery(); err == nil {
			s.Recovery = int(v)
		}
	}
	return s, nil
}

// deleteSession runs DSR → DSResp.
func (e *gtpcEndpoint) deleteSession(ctx context.Context, s session) error {
	rsp, err := e.request2(ctx, message.NewDeleteSessionRequest(s.PeerC, 0, ie.NewEPSBearerID(s.EBI)), s.Peer)
	if err != nil {
		return err
	}
	r, ok := rsp.(*message.DeleteSessionResponse)
	if !ok || r.Cause == nil {
		return &FormatError{Msg: "DSResp", Detail: "no Cause"}
	}
	if c, err := r.Cause.Cause(); err != nil || c != gtpv2.CauseRequestAccepted {
		return &GTPCauseError{Msg: "DSResp", Cause: c}
	}
	return nil
}

// modifyBearer runs MBR → MBResp (ULI/RAT update; the S5-U F-TEID is re-sent
// unchanged).
func (e *gtpcEndpoint) modifyBearer(ctx context.Context, s session, sgwU netip.Addr) error {
	rsp, err := e.request2(ctx, message.NewModifyBearerRequest(s.PeerC, 0,
		ie.NewRATType(gtpv2.RATTypeEUTRAN),
		ie.NewBearerContext(ie.NewEPSBearerID(s.EBI),
			ie.NewFullyQualifiedTEID(gtpv2.IFTypeS5S8SGWGTPU, s.LocalU, sgwU.String(), "").WithInstance(1)),
	), s.Peer)
	if err != nil {
		return err
	}
	r, ok := rsp.(*message.ModifyBearerResponse)
	if !ok || r.Cause == nil {
		return &FormatError{Msg: "MBResp", Detail: "no Cause"}
	}
	if c, err := r.Cause.Cause(); err != nil || c != gtpv2.CauseRequestAccepted {
		return &GTPCauseError{Msg: "MBResp", Cause: c}
	}
	return nil
}

// echo2 sends a GTPv2 Echo Request and returns the peer's Recovery.
func (e *gtpcEndpoint) echo2(ctx context.Context, peer netip.AddrPort) (uint8, error) {
	rsp, err := e.request2(ctx, message.NewEchoRequest(0, ie.NewRecovery(e.restart)), peer)
	if err != nil {
		return 0, err
	}
	r, ok := rsp.(*message.EchoResponse)
	if !ok || r.Recovery == nil {
		return 0, &FormatError{Msg: "Echo Response", Detail: "no Recovery"}
	}
	v, err := r.Recovery.Recovery()
	if err != nil {
		return 0, &FormatError{Msg: "Echo Response", Detail: err.Error()}
	}
	return v, nil
}

// ---- Gp SGSN procedures

type pdpParams struct {
	imsi, msisdn, apn string
	visited           topology.PLMN
	localC, localU    uint32
	sgsnC, sgsnU      netip.Addr
	nsapi             uint8
}

// createPDP runs Create PDP Context Request/Response against ggsn.
func (e *gtpcEndpoint) createPDP(ctx context.Context, ggsn netip.AddrPort, p pdpParams) (session, error) {
	plmn, err := plmnBCD(p.visited)
	if err != nil {
		return session{}, err
	}
	// RAI hand-encoded: go-gtp drops the 3rd MNC digit (notes/gtp.md #12).
	rai := v1ie.New(v1ie.RouteingAreaIdentity, []byte{plmn[0], plmn[1], plmn[2], 0x00, 0x01, 0x01})
	ies := []*v1ie.IE{
		v1ie.NewIMSI(p.imsi),
		rai,
		v1ie.NewRecovery(e.restart),
		v1ie.NewSelectionMode(gtpv1.SelectionModeMSorNetworkProvidedAPNSubscribedVerified),
		v1ie.NewTEIDDataI(p.localU),
		v1ie.NewTEIDCPlane(p.localC),
		v1ie.NewNSAPI(p.nsapi),
		v1ie.NewEndUserAddressIPv4(""),
		v1ie.NewAccessPointName(p.apn),
		v1ie.NewGSNAddress(p.sgsnC.String()),
		v1ie.NewGSNAddress(p.sgsnU.String()),
	}
	if p.msisdn != "" {
		ies = append(ies, v1ie.NewMSISDN(p.msisdn))
	}
	// Rel-99 QoS profile: ARP 1, delay/reliability/precedence/peak/mean
	// "subscribed", traffic class interactive.
	ies = append(ies, v1ie.NewQoSProfile([]byte{0x01, 0x23, 0x72, 0x1f, 0x93, 0x96, 0x86, 0x74, 0x83, 0xff, 0xff, 0x00, 0x00}),
		v1ie.NewRATType(gtpv1.RatTypeUTRAN))
	rsp, err := e.request1(ctx, v1msg.NewCreatePDPContextRequest(0, 0, ies...), ggsn)
	if err != nil {
		return session{}, err
	}
	r, ok := rsp.(*v1msg.CreatePDPContextResponse)
	if !ok {
		return session{}, &FormatError{Msg: "CreatePDPResp", Detail: "response of type " + rsp.MessageTypeName()}
	}
	if r.Cause == nil {
		return session{}, &FormatError{Msg: "CreatePDPResp", Detail: "no Cause"}
	}
	cause, err := r.Cause.Cause()
	if err != nil {
		return session{}, &FormatError{Msg: "CreatePDPResp", Detail: "Cause: " + err.Error()}
	}
	if cause != gtpv1.ResCauseRequestAccepted {
		return session{}, &GTPCauseError{Msg: "CreatePDPResp", Cause: cause}
	}
	s := session{Peer: ggsn, LocalC: p.localC, LocalU: p.localU, EBI: p.nsapi, Recovery: -1}
	if r.TEIDCPlane == nil || r.TEIDDataI == nil {
		return session{}, &FormatError{Msg: "CreatePDPResp", Detail: "no TEID C-plane / Data I"}
	}
	if s.PeerC, err = r.TEIDCPlane.TEID(); err != nil {
		return session{}, &FormatError{Msg: "CreatePDPResp", Detail: "TEID C: " + err.Error()}
	}
	if s.PeerU, err = r.TEIDDataI.TEID(); err != nil {
		return session{}, &FormatError{Msg: "CreatePDPResp", Detail: "TEID U: " + err.Error()}
	}
	if r.EndUserAddress == nil || len(r.EndUserAddress.Payload) < 6 || r.EndUserAddress.Payload[1] != 0x21 {
		return session{}, &FormatError{Msg: "CreatePDPResp", Detail: "no IPv4 End User Address"}
	}
	s.UE, _ = netip.AddrFromSlice(r.EndUserAddress.Payload[2:6])
	uaddr := r.GGSNAddressForUserTraffic
	if uaddr == nil {
		uaddr = r.GGSNAddressForCPlane
	}
	if uaddr == nil || len(uaddr.Payload) != 4 {
		return session{}, &FormatError{Msg: "CreatePDPResp", Detail: "no IPv4 GGSN user-plane address"}
	}
	s.PeerUAdr, _ = netip.AddrFromSlice(uaddr.Payload)
	if r.Recovery != nil {
		if v, err := r.Recovery.Recovery(); err == nil {
			s.Recovery = int(v)
		}
	}
	return s, nil
}

// deletePDP runs Delete PDP Context Request/Response.
func (e *gtpcEndpoint) deletePDPContext(ctx context.Context, s session) error {
	rsp, err := e.request1(ctx, v1msg.NewDeletePDPContextRequest(s.PeerC, 0,
		v1ie.NewTeardownInd(true), v1ie.NewNSAPI(s.EBI)), s.Peer)
	if err != nil {
		return err
	}
	r, ok := rsp.(*v1msg.DeletePDPContextResponse)
	if !ok || r.Cause == nil {
		return &FormatError{Msg: "DeletePDPResp", Detail: "no Cause"}
	}
	if c, err := r.Cause.Cause(); err != nil || c != gtpv1.ResCauseRequestAccepted {
		return &GTPCauseError{Msg: "DeletePDPResp", Cause: c}
	}
	return nil
}
