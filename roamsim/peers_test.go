package roamsim

// Minimal peers for tests: an S6a HSS (go-diameter server, real Milenage
// vectors, ULA naming a PGW) and an S8 PGW + GTP-U reflector. Nothing better
// exists in the tree yet (region/hss and region/pgw are being built); these
// are deliberately independent of them.

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-diameter/v4/diam"
	"github.com/fiorix/go-diameter/v4/diam/avp"
	"github.com/fiorix/go-diameter/v4/diam/datatype"
	"github.com/fiorix/go-diameter/v4/diam/dict"
	"github.com/fiorix/go-diameter/v4/diam/sm"
	"github.com/fiorix/go-diameter/v4/diam/sm/smpeer"
	"github.com/wmnsk/go-gtp/gtpv1"
	v1ie "github.com/wmnsk/go-gtp/gtpv1/ie"
	v1msg "github.com/wmnsk/go-gtp/gtpv1/message"
	"github.com/wmnsk/go-gtp/gtpv2"
	"github.com/wmnsk/go-gtp/gtpv2/ie"
	"github.com/wmnsk/go-gtp/gtpv2/message"
	"github.com/wmnsk/milenage"
)

type hssSub struct {
	keys SIMKeys
	sqn  uint64
}

type testHSS struct {
	t       testing.TB
	addr    string
	srv     *diam.Server
	ind     uint64
	pgw     netip.Addr
	pgwHost string

	mu     sync.Mutex
	paused bool        // drop every request (a hung node)
	conns  []diam.Conn // every accepted connection
	subs   map[string]*hssSub
	mmes   map[string]diam.Conn // Origin-Host → conn
	airs   int
	ulrs   int
	resyn  int
	clas   chan uint32
}

func startHSS(t testing.TB, listen string, pgw netip.Addr, pgwHost string) *testHSS {
	t.Helper()
	h := &testHSS{t: t, ind: 16, pgw: pgw, pgwHost: pgwHost, subs: map[string]*hssSub{},
		mmes: map[string]diam.Conn{}, clas: make(chan uint32, 16)}
	mux := sm.New(&sm.Settings{OriginHost: "hss.test.example", OriginRealm: "test.example", VendorID: vendor3GPP,
		ProductName: "testhss", OriginStateID: 1})
	mux.HandleIdx(diam.CommandIndex{AppID: appS6a, Code: diam.AuthenticationInformation, Request: true}, diam.HandlerFunc(h.air))
	mux.HandleIdx(diam.CommandIndex{AppID: appS6a, Code: diam.UpdateLocation, Request: true}, diam.HandlerFunc(h.ulr))
	mux.HandleIdx(diam.CommandIndex{AppID: appS6a, Code: diam.CancelLocation, Request: false}, diam.HandlerFunc(func(c diam.Conn, m *diam.Message) {
		rc, _ := u32(first(m.AVP, avp.ResultCode))
		h.clas <- rc
	}))
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-mux.ErrorReports():
			case <-stop:
				return
			}
		}
	}()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", listen, err)
	}
	h.addr = ln.Addr().String()
	h.srv = &diam.Server{Handler: mux, Dict: dict.Default, OnNewConnection: func(c diam.Conn) {
		h.mu.Lock()
		h.conns = append(h.conns, c)
		h.mu.Unlock()
	}}
	done := make(chan struct{})
	go func() { h.srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		h.kill()
		<-done
		close(stop)
	})
	return h
}

// kill closes the listener and every connection (a dead region's HSS).
func (h *testHSS) kill() {
	h.srv.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
	h.conns = nil
}

func (h *testHSS) pause(p bool) {
	h.mu.Lock()
	h.paused = p
	h.mu.Unlock()
}

func (h *testHSS) isPaused() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.paused
}

func (h *testHSS) add(d Device, sqn uint64) {
	h.mu.Lock()
	h.subs[string(d.IMSI)] = &hssSub{keys: SIMKeys{Ki: d.Ki, OPc: d.OPc}, sqn: sqn}
	h.mu.Unlock()
}

func (h *testHSS) answer(req *diam.Message) *diam.Message {
	a := req.Answer(0)
	if sid := first(req.AVP, avp.SessionID); sid != nil {
		a.AddAVP(sid)
	}
	a.NewAVP(avp.AuthSessionState, avp.Mbit, 0, datatype.Enumerated(1))
	a.NewAVP(avp.OriginHost, avp.Mbit, 0, datatype.DiameterIdentity("hss.test.example"))
	a.NewAVP(avp.OriginRealm, avp.Mbit, 0, datatype.DiameterIdentity("test.example"))
	return a
}

func experimentalAVP(code uint32) *diam.AVP {
	return diam.NewAVP(avp.ExperimentalResult, avp.Mbit, 0, &diam.GroupedAVP{AVP: []*diam.AVP{
		diam.NewAVP(avp.VendorID, avp.Mbit, 0, datatype.Unsigned32(vendor3GPP)),
		diam.NewAVP(avp.ExperimentalResultCode, avp.Mbit, 0, datatype.Unsigned32(code))}})
}

func (h *testHSS) air(c diam.Conn, m *diam.Message) {
	if h.isPaused() {
		return
	}
	imsi := str(first(m.AVP, avp.UserName))
	visited := octets(first(m.AVP, avp.VisitedPLMNID))
	resync := octets(first(grouped(first(m.AVP, avp.RequestedEUTRANAuthenticationInfo)), avp.ResynchronizationInfo))
	a := h.answer(m)
	h.mu.Lock()
	h.airs++
	sub := h.subs[imsi]
	if sub == nil || len(visited) != 3 {
		h.mu.Unlock()
		a.AddAVP(experimentalAVP(5001))
		a.WriteTo(c)
		return
	}
	if resync != nil {
		sqnMS, err := RecoverSQNFromAUTS(sub.keys, resync[:16], resync[16:])
		if err != nil {
			h.mu.Unlock()
			a.AddAVP(experimentalAVP(4181))
			a.WriteTo(c)
			return
		}
		h.resyn++
		sub.sqn = sqnMS
	}
	sub.sqn = ((sub.sqn>>5)+1)<<5 | h.ind
	sqn, keys := sub.sqn, sub.keys
	h.mu.Unlock()

	rnd := make([]byte, 16)
	binary.BigEndian.PutUint64(rnd, sqn)
	copy(rnd[8:], imsi)
	mil := milenage.NewWithOPc(keys.Ki[:], keys.OPc[:], rnd, sqn, 0x8000)
	mil.F1()
	xres, ck, ik, _, _ := mil.F2345()
	autn, _ := mil.GenerateAUTN()
	kasme := KASME(ck, ik, [3]byte(visited), autn[:6])
	a.NewAVP(avp.ResultCode, avp.Mbit, 0, datatype.Unsigned32(diam.Success))
	a.NewAVP(avp.AuthenticationInfo, avp.Mbit|avp.Vbit, vendor3GPP, &diam.GroupedAVP{AVP: []*diam.AVP{
		diam.NewAVP(avp.EUTRANVector, avp.Mbit|avp.Vbit, vendor3GPP, &diam.GroupedAVP{AVP: []*diam.AVP{
			diam.NewAVP(avp.ItemNumber, avp.Mbit|avp.Vbit, vendor3GPP, datatype.Unsigned32(1)),
			diam.NewAVP(avp.RAND, avp.Mbit|avp.Vbit, vendor3GPP, datatype.OctetString(rnd)),
			diam.NewAVP(avp.XRES, avp.Mbit|avp.Vbit, vendor3GPP, datatype.OctetString(xres)),
			diam.NewAVP(avp.AUTN, avp.Mbit|avp.Vbit, vendor3GPP, datatype.OctetString(autn)),
			diam.NewAVP(avp.KASME, avp.Mbit|avp.Vbit, vendor3GPP, datatype.OctetString(kasme)),
		}}),
	}})
	a.WriteTo(c)
}

func (h *testHSS) ulr(c diam.Conn, m *diam.Message) {
	if h.isPaused() {
		return
	}
	imsi := str(first(m.AVP, avp.UserName))
	a := h.answer(m)
	h.mu.Lock()
	h.ulrs++
	_, known := h.subs[imsi]
	if meta, ok := smpeer.FromContext(c.Context()); ok {
		h.mmes[string(meta.OriginHost)] = c
	}
	h.mu.Unlock()
	if !known {
		a.AddAVP(experimentalAVP(5001))
		a.WriteTo(c)
		return
	}
	a.NewAVP(avp.ResultCode, avp.Mbit, 0, datatype.Unsigned32(diam.Success))
	a.NewAVP(avp.ULAFlags, avp.Mbit|avp.Vbit, vendor3GPP, datatype.Unsigned32(1))
	a.NewAVP(avp.SubscriptionData, avp.Mbit|avp.Vbit, vendor3GPP, &diam.GroupedAVP{AVP: []*diam.AVP{
		diam.NewAVP(avp.MSISDN, avp.Mbit|avp.Vbit, vendor3GPP, datatype.OctetString([]byte{0x44, 0x07, 0x00, 0x00, 0x00, 0xf1})),
		diam.NewAVP(avp.APNConfigurationProfile, avp.Mbit|avp.Vbit, vendor3GPP, &diam.GroupedAVP{AVP: []*diam.AVP{
			diam.NewAVP(avp.ContextIdentifier, avp.Mbit|avp.Vbit, vendor3GPP, datatype.Unsigned32(1)),
			diam.NewAVP(avp.AllAPNConfigurationsIncludedIndicator, avp.Mbit|avp.Vbit, vendor3GPP, datatype.Enumerated(0)),
			diam.NewAVP(avp.APNConfiguration, avp.Mbit|avp.Vbit, vendor3GPP, &diam.GroupedAVP{AVP: []*diam.AVP{
				diam.NewAVP(avp.ContextIdentifier, avp.Mbit|avp.Vbit, vendor3GPP, datatype.Unsigned32(1)),
				diam.NewAVP(avp.PDNType, avp.Mbit|avp.Vbit, vendor3GPP, datatype.Enumerated(0)),
				diam.NewAVP(avp.ServiceSelection, avp.Mbit, 0, datatype.UTF8String("iot.example")),
				diam.NewAVP(avp.MIP6AgentInfo, avp.Mbit, 0, &diam.GroupedAVP{AVP: []*diam.AVP{
					diam.NewAVP(avp.MIPHomeAgentAddress, avp.Mbit, 0, datatype.Address(h.pgw.AsSlice())),
					diam.NewAVP(avp.MIPHomeAgentHost, avp.Mbit, 0, &diam.GroupedAVP{AVP: []*diam.AVP{
						diam.NewAVP(avp.DestinationRealm, avp.Mbit, 0, datatype.DiameterIdentity("epc.test.example")),
						diam.NewAVP(avp.DestinationHost, avp.Mbit, 0, datatype.DiameterIdentity(h.pgwHost)),
					}}),
				}}),
				diam.NewAVP(avp.PDNGWAllocationType, avp.Mbit|avp.Vbit, vendor3GPP, datatype.Enumerated(0)),
			}}),
		}}),
	}})
	a.WriteTo(c)
}

// cancel sends a CLR for imsi to the MME mmeHost and waits for the CLA.
func (h *testHSS) cancel(imsi, mmeHost string, reattach bool) (uint32, error) {
	h.mu.Lock()
	c := h.mmes[mmeHost]
	for _, cc := range h.conns { // newest connection from that host wins
		if meta, ok := smpeer.FromContext(cc.Context()); ok && string(meta.OriginHost) == mmeHost {
			c = cc
		}
	}
	h.mu.Unlock()
	if c == nil {
		return 0, errors.New("no connection from " + mmeHost)
	}
	r := diam.NewMessage(diam.CancelLocation, diam.RequestFlag|diam.ProxiableFlag, appS6a, 77, 77, dict.Default)
	r.NewAVP(avp.SessionID, avp.Mbit, 0, datatype.UTF8String("hss.test.example;1;77"))
	r.NewAVP(avp.AuthSessionState, avp.Mbit, 0, datatype.Enumerated(1))
	r.NewAVP(avp.OriginHost, avp.Mbit, 0, datatype.DiameterIdentity("hss.test.example"))
	r.NewAVP(avp.OriginRealm, avp.Mbit, 0, datatype.DiameterIdentity("test.example"))
	r.NewAVP(avp.DestinationHost, avp.Mbit, 0, datatype.DiameterIdentity(mmeHost))
	r.NewAVP(avp.DestinationRealm, avp.Mbit, 0, datatype.DiameterIdentity("roamsim.example"))
	r.NewAVP(avp.UserName, avp.Mbit, 0, datatype.UTF8String(imsi))
	r.NewAVP(avp.CancellationType, avp.Mbit|avp.Vbit, vendor3GPP, datatype.Enumerated(2))
	flags := uint32(0)
	if reattach {
		flags = clrReattachRequired
	}
	r.NewAVP(avp.CLRFlags, avp.Mbit|avp.Vbit, vendor3GPP, datatype.Unsigned32(flags))
	if _, err := r.WriteTo(c); err != nil {
		return 0, err
	}
	select {
	case rc := <-h.clas:
		return rc, nil
	case <-time.After(10 * time.Second):
		return 0, errors.New("no CLA")
	}
}

// ---- PGW

type pgwSess struct {
	sgwC     uint32
	sgwCAddr netip.AddrPort
	sgwU     uint32
	ue       netip.Addr
	imsi     string
}

type testPGW struct {
	t       testing.TB
	c, u    *net.UDPConn
	ip      netip.Addr
	mu      sync.Mutex
	byC     map[uint32]*pgwSess
	byU     map[uint32]*pgwSess
	next    uint32
	dropCSR int // drop this many CSRs (retransmission test)
	rec     uint8
	mbrs    int
	csrs    int
	dsrs    int
	echoed  int
	wg      sync.WaitGroup
}

func startPGW(t testing.TB, ip netip.Addr) *testPGW {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, PortGTPC)))
	if err != nil {
		t.Skipf("cannot bind PGW GTP-C on %v: %v", ip, err)
	}
	u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, PortGTPU)))
	if err != nil {
		c.Close()
		t.Skipf("cannot bind PGW GTP-U on %v: %v", ip, err)
	}
	p := &testPGW{t: t, c: c, u: u, ip: ip, byC: map[uint32]*pgwSess{}, byU: map[uint32]*pgwSess{}, next: 0x100, rec: 3}
	p.wg.Add(2)
	go func() { defer p.wg.Done(); p.serveC() }()
	go func() { defer p.wg.Done(); p.serveU() }()
	t.Cleanup(func() { c.Close(); u.Close(); p.wg.Wait() })
	return p
}

func (p *testPGW) sendTo(m message.Message, to netip.AddrPort) {
	b, err := marshal(m)
	if err != nil {
		p.t.Errorf("pgw marshal: %v", err)
		return
	}
	p.c.WriteToUDPAddrPort(b, to)
}

func (p *testPGW) serveC() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if n > 0 && buf[0]>>5 == 1 {
			p.serveV1(buf[:n], from)
			continue
		}
		m, err := message.Parse(buf[:n])
		if err != nil {
			continue
		}
		switch r := m.(type) {
		case *message.EchoRequest:
			p.mu.Lock()
			rec := p.rec
			p.mu.Unlock()
			p.sendTo(message.NewEchoResponse(r.Sequence(), ie.NewRecovery(rec)), from)
		case *message.ModifyBearerRequest:
			p.mu.Lock()
			p.mbrs++
			s := p.byC[r.TEID()]
			p.mu.Unlock()
			if s == nil {
				p.sendTo(message.NewModifyBearerResponse(0, r.Sequence(), ie.NewCause(gtpv2.CauseContextNotFound, 0, 0, 0, nil)), from)
				continue
			}
			p.sendTo(message.NewModifyBearerResponse(s.sgwC, r.Sequence(), ie.NewCause(gtpv2.CauseRequestAccepted, 0, 0, 0, nil),
				ie.NewBearerContext(ie.NewCause(gtpv2.CauseRequestAccepted, 0, 0, 0, nil), ie.NewEPSBearerID(5))), from)
		case *message.CreateSessionRequest:
			p.mu.Lock()
			p.csrs++
			if p.dropCSR > 0 {
				p.dropCSR--
				p.mu.Unlock()
				continue
			}
			s := &pgwSess{}
			s.imsi, _ = r.IMSI.IMSI()
			s.sgwC, _ = r.SenderFTEIDC.TEID()
			s.sgwCAddr = from
			for _, ch := range r.BearerContextsToBeCreated[0].ChildIEs {
				if ch.Type == ie.FullyQualifiedTEID && ch.Instance() == 2 {
					s.sgwU, _ = ch.TEID()
				}
			}
			p.next++
			teid := p.next
			s.ue = netip.AddrFrom4([4]byte{10, 45, byte(teid >> 8), byte(teid)})
			p.byC[teid], p.byU[teid] = s, s
			rec := p.rec
			p.mu.Unlock()
			p.sendTo(message.NewCreateSessionResponse(s.sgwC, r.Sequence(),
				ie.NewCause(gtpv2.CauseRequestAccepted, 0, 0, 0, nil),
				ie.NewFullyQualifiedTEID(gtpv2.IFTypeS5S8PGWGTPC, teid, p.ip.String(), "").WithInstance(1),
				ie.NewPDNAddressAllocation(s.ue.String()),
				ie.NewAPNRestriction(gtpv2.APNRestrictionPublic1),
				ie.NewAggregateMaximumBitRate(1000, 1000),
				ie.NewBearerContext(ie.NewCause(gtpv2.CauseRequestAccepted, 0, 0, 0, nil), ie.NewEPSBearerID(5),
					ie.NewFullyQualifiedTEID(gtpv2.IFTypeS5S8PGWGTPU, teid, p.ip.String(), "").WithInstance(2),
					ie.NewChargingID(teid)),
				ie.NewRecovery(rec)), from)
		case *message.DeleteSessionRequest:
			p.mu.Lock()
			p.dsrs++
			s := p.byC[r.TEID()]
			delete(p.byC, r.TEID())
			delete(p.byU, r.TEID())
			p.mu.Unlock()
			if s == nil {
				p.sendTo(message.NewDeleteSessionResponse(0, r.Sequence(), ie.NewCause(gtpv2.CauseContextNotFound, 0, 0, 0, nil)), from)
				continue
			}
			p.sendTo(message.NewDeleteSessionResponse(s.sgwC, r.Sequence(), ie.NewCause(gtpv2.CauseRequestAccepted, 0, 0, 0, nil)), from)
		}
	}
}

// serveV1 is a minimal GGSN: Create/Delete PDP Context.
func (p *testPGW) serveV1(b []byte, from netip.AddrPort) {
	m, err := v1msg.Parse(b)
	if err != nil {
		return
	}
	send := func(m v1msg.Message) {
		if b, err := marshal(m); err == nil {
			p.c.WriteToUDPAddrPort(b, from)
		}
	}
	switch r := m.(type) {
	case *v1msg.CreatePDPContextRequest:
		s := &pgwSess{sgwCAddr: from}
		s.imsi, _ = r.IMSI.IMSI()
		s.sgwC, _ = r.TEIDCPlane.TEID()
		s.sgwU, _ = r.TEIDDataI.TEID()
		p.mu.Lock()
		p.csrs++
		p.next++
		teid := p.next
		s.ue = netip.AddrFrom4([4]byte{10, 46, byte(teid >> 8), byte(teid)})
		p.byC[teid], p.byU[teid] = s, s
		p.mu.Unlock()
		send(v1msg.NewCreatePDPContextResponse(s.sgwC, r.Sequence(),
			v1ie.NewCause(gtpv1.ResCauseRequestAccepted), v1ie.NewReorderingRequired(false), v1ie.NewRecovery(3),
			v1ie.NewTEIDDataI(teid), v1ie.NewTEIDCPlane(teid), v1ie.NewChargingID(teid),
			v1ie.NewEndUserAddress(s.ue.String()),
			v1ie.NewGSNAddress(p.ip.String()), v1ie.NewGSNAddress(p.ip.String())))
	case *v1msg.DeletePDPContextRequest:
		p.mu.Lock()
		p.dsrs++
		s := p.byC[r.TEID()]
		delete(p.byC, r.TEID())
		delete(p.byU, r.TEID())
		p.mu.Unlock()
		if s == nil {
			send(v1msg.NewDeletePDPContextResponse(0, r.Sequence(), v1ie.NewCause(gtpv1.ResCauseNonExistent)))
			return
		}
		send(v1msg.NewDeletePDPContextResponse(s.sgwC, r.Sequence(), v1ie.NewCause(gtpv1.ResCauseRequestAccepted)))
	}
}

// serveU reflects ICMP echo requests as replies (the "internet").
func (p *testPGW) serveU() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.u.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		b := buf[:n]
		if n < 8+28 || b[1] != gtpuGPDU {
			continue
		}
		teid := binary.BigEndian.Uint32(b[4:8])
		p.mu.Lock()
		s := p.byU[teid]
		if s != nil {
			p.echoed++
		}
		p.mu.Unlock()
		if s == nil {
			// Error Indication: TEID Data I 16, GTP-U Peer Address 133.
			ip4 := p.ip.As4()
			ei := []byte{0x32, gtpuErrorInd, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0, 133, 0, 4, ip4[0], ip4[1], ip4[2], ip4[3]}
			binary.BigEndian.PutUint32(ei[13:17], teid)
			p.u.WriteToUDPAddrPort(ei, from)
			continue
		}
		ip := b[8:]
		if s == nil || ip[9] != 1 || ip[20] != 8 {
			continue
		}
		var src, dst [4]byte
		copy(src[:], ip[12:16])
		copy(dst[:], ip[16:20])
		if netip.AddrFrom4(src) != s.ue {
			continue // anti-spoofing, as a PGW would
		}
		copy(ip[12:16], dst[:])
		copy(ip[16:20], src[:])
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:12], checksum(ip[:20], 0))
		ip[20] = 0 // echo reply
		ip[22], ip[23] = 0, 0
		binary.BigEndian.PutUint16(ip[22:24], checksum(ip[20:], 0))
		binary.BigEndian.PutUint32(b[4:8], s.sgwU)
		p.u.WriteToUDPAddrPort(b, from)
	}
}

// deleteBearer sends a Delete Bearer Request for the session of imsi.
func (p *testPGW) deleteBearer(imsi string, cause uint8) bool {
	p.mu.Lock()
	var s *pgwSess
	var teid uint32
	for k, v := range p.byC {
		if v.imsi == imsi {
			s, teid = v, k
		}
	}
	if s != nil {
		delete(p.byC, teid)
		delete(p.byU, teid)
	}
	p.mu.Unlock()
	if s == nil {
		return false
	}
	p.sendTo(message.NewDeleteBearerRequest(s.sgwC, 0x4242, ie.NewEPSBearerID(5), ie.NewCause(cause, 0, 0, 0, nil)), s.sgwCAddr)
	return true
}

// forget drops the session of imsi silently (a PGW that lost state).
func (p *testPGW) forget(imsi string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, v := range p.byC {
		if v.imsi == imsi {
			delete(p.byC, k)
			delete(p.byU, k)
			return true
		}
	}
	return false
}

// restart forgets every session and bumps the restart counter.
func (p *testPGW) restart() {
	p.mu.Lock()
	p.rec++
	p.byC, p.byU = map[uint32]*pgwSess{}, map[uint32]*pgwSess{}
	p.mu.Unlock()
}

func (p *testPGW) counts() (csrs, dsrs, sessions int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.csrs, p.dsrs, len(p.byC)
}
