package pgw_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/breakout"
	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/region/gtpc"
	"github.com/rendezvous-core/rendezvous/region/pgw"
	"github.com/rendezvous-core/rendezvous/region/session"
	"github.com/rendezvous-core/rendezvous/region/session/sessiontest"
	"github.com/rendezvous-core/rendezvous/topology"
	"github.com/wmnsk/go-gtp/gtpv2"
	"github.com/wmnsk/go-gtp/gtpv2/ie"
	"github.com/wmnsk/go-gtp/gtpv2/message"
)

// Addresses: the pgw tests use 127.0.20.50–.99, a pair per test.
var nextPair atomic.Uint32

type harness struct {
	ep   *gtpc.Endpoint
	pgw  *pgw.PGW
	tab  *session.Table
	tun  *sessiontest.Tunnels
	subs *sessiontest.Subscribers
	pgwA netip.Addr
	sgw  *sgw
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newHarness(t testing.TB, prefix string) *harness { return newHarnessPort(t, prefix, gtpc.Port) }

// newHarnessPort binds the PGW and the SGW on port (fuzz workers are
// processes of their own: each needs its own port).
func newHarnessPort(t testing.TB, prefix string, port uint16) *harness {
	t.Helper()
	k := nextPair.Add(1) - 1
	if k >= 25 {
		t.Fatal("out of test addresses")
	}
	h := &harness{
		pgwA: netip.AddrFrom4([4]byte{127, 0, 20, byte(50 + 2*k)}),
		tun:  sessiontest.NewTunnels(),
		subs: sessiontest.NewSubscribers(),
	}
	sgwA := netip.AddrFrom4([4]byte{127, 0, 20, byte(51 + 2*k)})
	var err error
	h.ep, err = gtpc.New(gtpc.Config{Addrs: []netip.AddrPort{netip.AddrPortFrom(h.pgwA, port)}, StateDir: t.TempDir(),
		T3: 50 * time.Millisecond, N3: 2, EchoInterval: -1, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.ep.Close() })
	h.tab, err = session.New(session.Config{NodeID: 0x11, Node: "jp-1", Region: topology.JP, Tunnels: h.tun, Logger: quiet(),
		Pools: []session.Pool{{APN: "internet", Prefix: netip.MustParsePrefix(prefix)}, {APN: "other", Prefix: netip.MustParsePrefix("10.99.0.0/24")}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.tab.Close() })
	h.pgw, err = pgw.New(pgw.Config{Endpoint: h.ep, Sessions: h.tab, Subscribers: h.subs, Logger: quiet(),
		DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("192.0.2.54")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.pgw.Close() })
	h.subs.AddRange(901700000000001, 100, 1, "internet")
	h.sgw = newSGW(t, netip.AddrPortFrom(sgwA, port), netip.AddrPortFrom(h.pgwA, port))
	return h
}

// sgw is a GTPv2 SGW stand-in on its own socket (port 2123: the PGW's
// Delete Bearer Requests come there).
type sgw struct {
	t    testing.TB
	c    *net.UDPConn
	addr netip.Addr
	pgw  netip.AddrPort
	seq  uint32
}

func newSGW(t testing.TB, a netip.AddrPort, pgwAddr netip.AddrPort) *sgw {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(a))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &sgw{t: t, c: c, addr: a.Addr(), pgw: pgwAddr, seq: 100}
}

func (s *sgw) send(b []byte) {
	s.t.Helper()
	if _, err := s.c.WriteToUDPAddrPort(b, s.pgw); err != nil {
		s.t.Fatal(err)
	}
}

func (s *sgw) recv() []byte {
	s.t.Helper()
	s.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 65536)
	n, from, err := s.c.ReadFromUDPAddrPort(b)
	if err != nil {
		s.t.Fatal(err)
	}
	if from != s.pgw {
		s.t.Fatalf("response from %v, want %v", from, s.pgw)
	}
	return b[:n]
}

func (s *sgw) roundTrip(b []byte) message.Message {
	s.t.Helper()
	s.send(b)
	m, err := message.Parse(s.recv())
	if err != nil {
		s.t.Fatal(err)
	}
	return m
}

type csrOpt func(*[]*ie.IE)

func (s *sgw) csr(imsi string, apn string, sgwTEID uint32, opts ...csrOpt) []byte {
	s.seq++
	ies := []*ie.IE{
		ie.NewIMSI(imsi), ie.NewMSISDN("8130900000001"), ie.NewServingNetwork("310", "260"),
		ie.NewRATType(gtpv2.RATTypeEUTRAN),
		ie.NewFullyQualifiedTEID(gtpv2.IFTypeS5S8SGWGTPC, sgwTEID, s.addr.String(), ""),
		ie.NewAccessPointName(apn), ie.NewSelectionMode(gtpv2.SelectionModeMSorNetworkProvidedAPNSubscribedVerified),
		ie.NewPDNType(gtpv2.PDNTypeIPv4), ie.NewPDNAddressAllocation("0.0.0.0"),
		ie.NewAggregateMaximumBitRate(0, 0),
		ie.NewProtocolConfigurationOptions(gtpv2.ConfigProtocolPPPWithIP,
			ie.NewPCOContainer(gtpv2.ProtoIDIPCP, []byte{1, 0, 0, 16, 129, 6, 0, 0, 0, 0, 131, 6, 0, 0, 0, 0}),
			ie.NewPCOContainer(gtpv2.ContIDDNSServerIPv4AddressRequest, nil)),
		ie.NewBearerContext(ie.NewEPSBearerID(5),
			ie.NewFullyQualifiedTEID(gtpv2.IFTypeS5S8SGWGTPU, sgwTEID+1, s.addr.String(), "").WithInstance(2),
			ie.NewBearerQoS(1, 2, 1, 9, 0, 0, 0, 0)),
		ie.NewRecovery(1),
	}
	for _, o := range opts {
		o(&ies)
	}
	b, err := message.Marshal(message.NewCreateSessionRequest(0, s.seq, ies...))
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

func without(t uint8, instance uint8) csrOpt {
	return func(ies *[]*ie.IE) {
		out := (*ies)[:0]
		for _, i := range *ies {
			if i.Type != t || i.Instance() != instance {
				out = append(out, i)
			}
		}
		*ies = out
	}
}

func replace(n *ie.IE) csrOpt {
	return func(ies *[]*ie.IE) {
		for k, i := range *ies {
			if i.Type == n.Type && i.Instance() == n.Instance() {
				(*ies)[k] = n
				return
			}
		}
		*ies = append(*ies, n)
	}
}

func cause(t testing.TB, i *ie.IE) uint8 {
	t.Helper()
	if i == nil {
		t.Fatal("no Cause IE")
	}
	c, err := i.Cause()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (h *harness) create(t testing.TB, imsi string, sgwTEID uint32) (*message.CreateSessionResponse, uint32) {
	t.Helper()
	m := h.sgw.roundTrip(h.sgw.csr(imsi, "internet", sgwTEID))
	r, ok := m.(*message.CreateSessionResponse)
	if !ok {
		t.Fatalf("got %T", m)
	}
	if c := cause(t, r.Cause); c != gtpv2.CauseRequestAccepted {
		t.Fatalf("CSR %s: cause %d", imsi, c)
	}
	teid, _ := r.PGWS5S8FTEIDC.TEID()
	return r, teid
}

func TestCreateAndDeleteSession(t *testing.T) {
	h := newHarness(t, "10.45.0.0/16")
	r, pgwTEID := h.create(t, "901700000000001", 0x1000)
	if r.TEID() != 0x1000 {
		t.Errorf("response header TEID %#x, want the SGW's 0x1000", r.TEID())
	}
	if ip, _ := r.PGWS5S8FTEIDC.IPAddress(); ip != h.pgwA.String() || pgwTEID>>24 != 0x11 {
		t.Errorf("PGW S5/S8-C F-TEID %s %#08x", ip, pgwTEID)
	}
	ue, _ := r.PAA.IPAddress()
	if !netip.MustParsePrefix("10.45.0.0/16").Contains(netip.MustParseAddr(ue)) {
		t.Errorf("PAA %s", ue)
	}
	if up, _ := r.AMBR.AggregateMaximumBitRateUp(); up != 1000 {
		t.Errorf("APN-AMBR up %d kbps, want 1000", up)
	}
	if rc, _ := r.Recovery.Recovery(); rc != h.ep.RestartCounter() {
		t.Errorf("Recovery %d", rc)
	}
	pco, err := r.PCO.ProtocolConfigurationOptions()
	if err != nil {
		t.Fatal(err)
	}
	var dns []string
	for _, c := range pco.ProtocolOrContainers {
		switch c.ID {
		case gtpv2.ContIDDNSServerIPv4AddressRequest:
			dns = append(dns, net.IP(c.Contents).String())
		case gtpv2.ProtoIDIPCP:
			if !bytes.Equal(c.Contents, []byte{3, 0, 0, 16, 129, 6, 192, 0, 2, 53, 131, 6, 192, 0, 2, 54}) {
				t.Errorf("IPCP answer % x", c.Contents)
			}
		}
	}
	if fmt.Sprint(dns) != "[192.0.2.53 192.0.2.54]" {
		t.Errorf("PCO DNS %v", dns)
	}
	if len(r.BearerContextsCreated) != 1 {
		t.Fatal("no bearer context")
	}
	var uTEID uint32
	var chargingID uint32
	for _, ch := range r.BearerContextsCreated[0].ChildIEs {
		switch {
		case ch.Type == ie.FullyQualifiedTEID && ch.Instance() == 2:
			uTEID, _ = ch.TEID()
		case ch.Type == ie.ChargingID:
			chargingID, _ = ch.ChargingID()
		case ch.Type == ie.EPSBearerID:
			if ebi, _ := ch.EPSBearerID(); ebi != 5 {
				t.Errorf("EBI %d", ebi)
			}
		}
	}
	if uTEID == 0 || chargingID == 0 {
		t.Errorf("S5/S8-U TEID %#x, charging id %d", uTEID, chargingID)
	}
	tn, ok := h.tun.Get(breakout.TEID(uTEID))
	if !ok || tn.PeerTEID != 0x1001 || tn.Peer != netip.AddrPortFrom(h.sgw.addr, 2152) || tn.UE.String() != ue || tn.IMSI != "901700000000001" {
		t.Errorf("breakout tunnel %+v %v", tn, ok)
	}
	// Delete Session.
	h.sgw.seq++
	b, _ := message.Marshal(message.NewDeleteSessionRequest(pgwTEID, h.sgw.seq, ie.NewEPSBearerID(5)))
	m := h.sgw.roundTrip(b)
	d, ok := m.(*message.DeleteSessionResponse)
	if !ok || cause(t, d.Cause) != gtpv2.CauseRequestAccepted || d.TEID() != 0x1000 {
		t.Fatalf("DSResp %v", m)
	}
	if h.tab.Len() != 0 {
		t.Errorf("%d sessions left", h.tab.Len())
	}
	if n, _, _ := h.tun.Stats(); n != 0 {
		t.Errorf("%d tunnels left", n)
	}
	// Again: Context Not Found with TEID 0 (TS 29.274 §7.2.10.1).
	h.sgw.seq++
	b, _ = message.Marshal(message.NewDeleteSessionRequest(pgwTEID, h.sgw.seq, ie.NewEPSBearerID(5)))
	d = h.sgw.roundTrip(b).(*message.DeleteSessionResponse)
	if cause(t, d.Cause) != gtpv2.CauseContextNotFound || d.TEID() != 0 {
		t.Errorf("DSR on a deleted session: cause %d TEID %#x", cause(t, d.Cause), d.TEID())
	}
}

func TestRetransmittedCreateSession(t *testing.T) {
	h := newHarness(t, "10.46.0.0/16")
	req := h.sgw.csr("901700000000002", "internet", 0x2000)
	h.sgw.send(req)
	first := h.sgw.recv()
	h.sgw.send(req)
	second := h.sgw.recv()
	if !bytes.Equal(first, second) {
		t.Errorf("retransmission answered differently:\n% x\n% x", first, second)
	}
	if h.tab.Len() != 1 {
		t.Errorf("%d sessions, want 1", h.tab.Len())
	}
	if _, installs, _ := h.tun.Stats(); installs != 1 {
		t.Errorf("%d breakout installs, want 1", installs)
	}
}

func TestCreateSessionCauses(t *testing.T) {
	h := newHarness(t, "10.47.0.0/30") // one usable address
	h.subs.Add(registry.Subscriber{IMSI: "901700000000500", Status: registry.StatusSuspended,
		APNs: []registry.APN{{Name: "internet"}}})
	s := h.sgw
	cases := []struct {
		name  string
		req   []byte
		cause uint8
	}{
		{"unknown IMSI", s.csr("901709999999999", "internet", 1), gtpv2.CauseIMSIIMEINotKnown},
		{"unknown APN", s.csr("901700000000003", "nosuch.example", 1), gtpv2.CauseMissingOrUnknownAPN},
		{"APN not subscribed", s.csr("901700000000003", "other", 1), gtpv2.CauseAPNAccessDeniedNoSubscription},
		{"suspended", s.csr("901700000000500", "internet", 1), gtpv2.CauseUserAuthenticationFailed},
		{"no APN IE", s.csr("901700000000003", "internet", 1, without(ie.AccessPointName, 0)), gtpv2.CauseMandatoryIEMissing},
		{"no IMSI", s.csr("901700000000003", "internet", 1, without(ie.IMSI, 0)), gtpv2.CauseMandatoryIEMissing},
		{"no bearer context", s.csr("901700000000003", "internet", 1, without(ie.BearerContext, 0)), gtpv2.CauseMandatoryIEMissing},
		{"no RAT type", s.csr("901700000000003", "internet", 1, without(ie.RATType, 0)), gtpv2.CauseMandatoryIEMissing},
		{"bad EBI", s.csr("901700000000003", "internet", 1, replace(ie.NewBearerContext(ie.NewEPSBearerID(2),
			ie.NewFullyQualifiedTEID(gtpv2.IFTypeS5S8SGWGTPU, 9, s.addr.String(), "").WithInstance(2),
			ie.NewBearerQoS(1, 2, 1, 9, 0, 0, 0, 0)))), gtpv2.CauseMandatoryIEIncorrect},
		{"IPv6 only", s.csr("901700000000003", "internet", 1, replace(ie.NewPDNType(gtpv2.PDNTypeIPv6))), gtpv2.CausePreferredPDNTypeNotSupported},
	}
	for _, c := range cases {
		m := s.roundTrip(c.req)
		r, ok := m.(*message.CreateSessionResponse)
		if !ok {
			t.Fatalf("%s: got %T", c.name, m)
		}
		if got := cause(t, r.Cause); got != c.cause {
			t.Errorf("%s: cause %d, want %d", c.name, got, c.cause)
		}
		if r.TEID() != 1 && c.name != "no sender F-TEID" {
			t.Errorf("%s: header TEID %#x, want the SGW's", c.name, r.TEID())
		}
	}
	// No sender F-TEID: TEID 0.
	r := s.roundTrip(s.csr("901700000000003", "internet", 1, without(ie.FullyQualifiedTEID, 0))).(*message.CreateSessionResponse)
	if cause(t, r.Cause) != gtpv2.CauseMandatoryIEMissing || r.TEID() != 0 {
		t.Errorf("no sender F-TEID: cause %d TEID %d", cause(t, r.Cause), r.TEID())
	}
	// Pool of one: the second subscriber finds it full.
	h.create(t, "901700000000004", 0x10)
	r = s.roundTrip(s.csr("901700000000005", "internet", 0x20)).(*message.CreateSessionResponse)
	if c := cause(t, r.Cause); c != gtpv2.CauseAllDynamicAddressesAreOccupied {
		t.Errorf("pool exhausted: cause %d, want 84", c)
	}
	// IPv4v6 request: IPv4 with cause 18 (network preference) — needs a
	// free address, so delete first.
	h.subs.SetErr(fmt.Errorf("db down: %w", registry.ErrUnavailable))
	r = s.roundTrip(s.csr("901700000000006", "internet", 0x30)).(*message.CreateSessionResponse)
	if c := cause(t, r.Cause); c != gtpv2.CauseSystemFailure {
		t.Errorf("registry down: cause %d, want 72", c)
	}
	h.subs.SetErr(nil)
	// A message go-gtp cannot decode: Invalid Message Format.
	bad := []byte{0x48, 32, 0, 12, 0, 0, 0, 0, 0, 0, 0x77, 0, 1, 0, 9, 0} // IMSI IE claims 9 octets
	r = s.roundTrip(bad).(*message.CreateSessionResponse)
	if c := cause(t, r.Cause); c != gtpv2.CauseInvalidMessageFormat {
		t.Errorf("undecodable CSR: cause %d, want 65", c)
	}
	if h.tab.Len() != 1 {
		t.Errorf("%d sessions, want 1", h.tab.Len())
	}
}

func TestModifyBearerReinstalls(t *testing.T) {
	h := newHarness(t, "10.48.0.0/16")
	r, pgwTEID := h.create(t, "901700000000007", 0x3000)
	_ = r
	h.sgw.seq++
	b, _ := message.Marshal(message.NewModifyBearerRequest(pgwTEID, h.sgw.seq,
		ie.NewFullyQualifiedTEID(gtpv2.IFTypeS5S8SGWGTPC, 0x4000, h.sgw.addr.String(), ""),
		ie.NewBearerContext(ie.NewEPSBearerID(5),
			ie.NewFullyQualifiedTEID(gtpv2.IFTypeS5S8SGWGTPU, 0x4001, "127.0.20.200", "").WithInstance(1))))
	m := h.sgw.roundTrip(b)
	mr, ok := m.(*message.ModifyBearerResponse)
	if !ok || cause(t, mr.Cause) != gtpv2.CauseRequestAccepted || mr.TEID() != 0x3000 {
		t.Fatalf("MBResp %v", m)
	}
	tn, _ := h.tun.Get(breakout.TEID(pgwTEID))
	if tn.PeerTEID != 0x4001 || tn.Peer != netip.MustParseAddrPort("127.0.20.200:2152") {
		t.Errorf("breakout after MBR: %+v", tn)
	}
	s, _ := h.tab.ByTEID(breakout.TEID(pgwTEID))
	if s.PeerTEIDC != 0x4000 {
		t.Errorf("session peer C-TEID %#x", s.PeerTEIDC)
	}
	// Unknown TEID → 64.
	h.sgw.seq++
	b, _ = message.Marshal(message.NewModifyBearerRequest(0x11ffffff, h.sgw.seq, ie.NewBearerContext(ie.NewEPSBearerID(5))))
	mr = h.sgw.roundTrip(b).(*message.ModifyBearerResponse)
	if cause(t, mr.Cause) != gtpv2.CauseContextNotFound {
		t.Errorf("MBR unknown TEID: cause %d", cause(t, mr.Cause))
	}
}

func TestPGWInitiatedDelete(t *testing.T) {
	h := newHarness(t, "10.49.0.0/16")
	for i := range 5 {
		h.create(t, fmt.Sprintf("9017000000000%02d", 30+i), uint32(0x5000+16*i))
	}
	// The SGW answers Delete Bearer Requests, except for TEID 0x5040.
	var seen atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, 65536)
		for {
			h.sgw.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, from, err := h.sgw.c.ReadFromUDPAddrPort(b)
			if err != nil {
				return
			}
			m, err := message.Parse(b[:n])
			if err != nil {
				continue
			}
			dbr, ok := m.(*message.DeleteBearerRequest)
			if !ok {
				continue
			}
			seen.Add(1)
			if dbr.TEID() != 0x5000 {
				if c, err := dbr.Cause.Cause(); err != nil || c != gtpv2.CauseReactivationRequested {
					t.Errorf("DBR cause %d %v", c, err)
				}
			}
			if ebi, _ := dbr.LinkedEBI.EPSBearerID(); ebi != 5 {
				t.Errorf("DBR LBI %d", ebi)
			}
			if dbr.TEID() == 0x5040 {
				continue
			}
			resp, _ := message.Marshal(message.NewDeleteBearerResponse(0x11000000, dbr.Sequence(),
				ie.NewCause(gtpv2.CauseRequestAccepted, 0, 0, 0, nil), ie.NewEPSBearerID(5)))
			h.sgw.c.WriteToUDPAddrPort(resp, from)
		}
	}()
	res, err := h.pgw.DeleteSessions(context.Background(), func(s session.Session) bool {
		return s.IMSI != "901700000000030"
	}, gtpv2.CauseReactivationRequested)
	if res.Selected != 4 || res.Answered != 3 || res.Failed != 1 || err == nil {
		t.Errorf("DeleteSessions = %+v, %v", res, err)
	}
	if h.tab.Len() != 1 {
		t.Errorf("%d sessions left, want 1", h.tab.Len())
	}
	res, err = h.pgw.DeleteIMSI(context.Background(), "901700000000030", 0)
	if err != nil || res.Selected != 1 || res.Answered != 1 || h.tab.Len() != 0 {
		t.Errorf("DeleteIMSI = %+v, %v; %d left", res, err, h.tab.Len())
	}
	// 3 answered + 3 copies of the unanswered one (N3 = 2) + 1.
	if n := seen.Load(); n != 7 {
		t.Errorf("SGW saw %d Delete Bearer Requests, want 7", n)
	}
	h.sgw.c.Close()
	<-done
}

func TestSGWRestartRemovesItsSessions(t *testing.T) {
	h := newHarness(t, "10.50.0.0/16")
	var lost []session.Session
	h.pgw.Close()
	var err error
	h.pgw, err = pgw.New(pgw.Config{Endpoint: h.ep, Sessions: h.tab, Subscribers: h.subs, Logger: quiet(),
		Registerer: nil, OnPeerRestart: func(_ gtpc.PeerRestart, s []session.Session) { lost = append(lost, s...) }})
	if err != nil {
		t.Fatal(err)
	}
	h.create(t, "901700000000010", 0x10) // Recovery 1
	h.create(t, "901700000000011", 0x20)
	m := h.sgw.roundTrip(h.sgw.csr("901700000000012", "internet", 0x30, replace(ie.NewRecovery(2))))
	if c := cause(t, m.(*message.CreateSessionResponse).Cause); c != gtpv2.CauseRequestAccepted {
		t.Fatalf("cause %d", c)
	}
	if h.tab.Len() != 1 || len(lost) != 2 {
		t.Errorf("after the SGW restart: %d sessions (want 1), %d reported lost (want 2)", h.tab.Len(), len(lost))
	}
}

func TestMalformedDatagramDoesNotDisturbSessions(t *testing.T) {
	h := newHarness(t, "10.51.0.0/16")
	_, other := h.create(t, "901700000000021", 0x20)
	_, teid := h.create(t, "901700000000020", 0x10)
	teid = other // junk aimed at the other session
	for _, b := range [][]byte{{0x48}, {0x48, 32, 0xff, 0xff}, {0x48, 34, 0, 8, 0, 0, 0, 0, 0, 0, 1, 0},
		{0x48, 36, 0, 9, byte(teid >> 24), byte(teid >> 16), byte(teid >> 8), byte(teid), 0, 0, 9, 0, 0xff},
		bytes.Repeat([]byte{0x48}, 3000)} {
		h.sgw.send(b)
	}
	// The answers to the junk (if any) are skipped; the sessions are intact.
	if h.tab.Len() != 2 {
		t.Errorf("%d sessions after junk, want 2", h.tab.Len())
	}
	h.sgw.seq++
	b, _ := message.Marshal(message.NewDeleteSessionRequest(teid, h.sgw.seq, ie.NewEPSBearerID(5)))
	h.sgw.send(b)
	for {
		m, err := message.Parse(h.sgw.recv())
		if err != nil {
			continue
		}
		if m.Sequence() == h.sgw.seq {
			if c := cause(t, m.(*message.DeleteSessionResponse).Cause); c != gtpv2.CauseRequestAccepted {
				t.Fatalf("DSR after junk: cause %d", c)
			}
			break
		}
	}
}

func TestConfigRequired(t *testing.T) {
	if _, err := pgw.New(pgw.Config{}); err == nil {
		t.Error("New with an empty config succeeded")
	}
	_ = errors.New
}
