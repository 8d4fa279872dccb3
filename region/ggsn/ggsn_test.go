package ggsn_test

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/breakout"
	"github.com/rendezvous-core/rendezvous/region/ggsn"
	"github.com/rendezvous-core/rendezvous/region/gtpc"
	"github.com/rendezvous-core/rendezvous/region/session"
	"github.com/rendezvous-core/rendezvous/region/session/sessiontest"
	"github.com/rendezvous-core/rendezvous/topology"
	"github.com/wmnsk/go-gtp/gtpv1"
	"github.com/wmnsk/go-gtp/gtpv1/ie"
	"github.com/wmnsk/go-gtp/gtpv1/message"
)

// Addresses: the ggsn tests use 127.0.20.100–.149, a pair per test.
var nextPair atomic.Uint32

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

type harness struct {
	ep    *gtpc.Endpoint
	g     *ggsn.GGSN
	tab   *session.Table
	tun   *sessiontest.Tunnels
	subs  *sessiontest.Subscribers
	ggsnA netip.Addr
	sgsnA netip.Addr
	c     *net.UDPConn
	seq   uint16
	port  uint16
}

func newHarness(t testing.TB) *harness { return newHarnessPort(t, gtpc.Port) }

// newHarnessPort binds the GGSN and the SGSN on port (fuzz workers are
// processes of their own: each needs its own port).
func newHarnessPort(t testing.TB, port uint16) *harness {
	t.Helper()
	k := nextPair.Add(1) - 1
	h := &harness{
		ggsnA: netip.AddrFrom4([4]byte{127, 0, 20, byte(100 + 2*k)}),
		sgsnA: netip.AddrFrom4([4]byte{127, 0, 20, byte(101 + 2*k)}),
		tun:   sessiontest.NewTunnels(), subs: sessiontest.NewSubscribers(),
	}
	var err error
	h.ep, err = gtpc.New(gtpc.Config{Addrs: []netip.AddrPort{netip.AddrPortFrom(h.ggsnA, port)}, StateDir: t.TempDir(),
		T3: 50 * time.Millisecond, N3: 2, EchoInterval: -1, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.ep.Close() })
	h.tab, err = session.New(session.Config{NodeID: 0x22, Node: "de-1", Region: topology.DE, Tunnels: h.tun, Logger: quiet(),
		Pools: []session.Pool{{APN: "internet", Prefix: netip.MustParsePrefix("10.60.0.0/16")}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.tab.Close() })
	h.g, err = ggsn.New(ggsn.Config{Endpoint: h.ep, Sessions: h.tab, Subscribers: h.subs, Logger: quiet(),
		DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.g.Close() })
	h.subs.AddRange(901700000000001, 50, 1, "internet")
	h.port = port
	h.c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(h.sgsnA, port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.c.Close() })
	return h
}

func (h *harness) roundTrip(t testing.TB, b []byte) message.Message {
	t.Helper()
	if _, err := h.c.WriteToUDPAddrPort(b, netip.AddrPortFrom(h.ggsnA, h.port)); err != nil {
		t.Fatal(err)
	}
	h.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65536)
	n, _, err := h.c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	m, err := message.Parse(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (h *harness) cpdp(imsi, apn string, teid uint32, drop ...uint8) []byte {
	h.seq++
	ies := []*ie.IE{
		ie.NewIMSI(imsi), ie.NewRecovery(3), ie.NewSelectionMode(0xf0),
		ie.NewTEIDDataI(teid + 1), ie.NewTEIDCPlane(teid), ie.NewNSAPI(5),
		ie.New(ie.EndUserAddress, []byte{0xf1, 0x21}), ie.NewAccessPointName(apn),
		ie.NewProtocolConfigurationOptions(0, ie.NewConfigurationProtocolOption(gtpv1.ProtoIDIPCP,
			[]byte{1, 0, 0, 10, 129, 6, 0, 0, 0, 0})),
		ie.NewGSNAddress(h.sgsnA.String()), ie.NewGSNAddress(h.sgsnA.String()),
		ie.NewMSISDN("46700000001"), ie.NewQoSProfile([]byte{0x0b, 0x92, 0x1f}),
	}
	out := ies[:0]
	for _, i := range ies {
		keep := true
		for _, d := range drop {
			if i.Type == d {
				keep = false
			}
		}
		if keep {
			out = append(out, i)
		}
	}
	b, _ := message.Marshal(message.NewCreatePDPContextRequest(0, h.seq, out...))
	return b
}

func causeOf(t testing.TB, i *ie.IE) uint8 {
	t.Helper()
	if i == nil {
		t.Fatal("no cause")
	}
	c, _ := i.Cause()
	return c
}

func TestCreateUpdateDeletePDP(t *testing.T) {
	h := newHarness(t)
	req := h.cpdp("901700000000001", "internet", 0x100)
	m := h.roundTrip(t, req)
	r, ok := m.(*message.CreatePDPContextResponse)
	if !ok || causeOf(t, r.Cause) != gtpv1.ResCauseRequestAccepted || r.TEID() != 0x100 {
		t.Fatalf("Create PDP Context Response %v", m)
	}
	teidC, _ := r.TEIDCPlane.TEID()
	teidU, _ := r.TEIDDataI.TEID()
	if teidC>>24 != 0x22 || teidU == 0 {
		t.Errorf("TEIDs %#x %#x", teidC, teidU)
	}
	eua := r.EndUserAddress.Payload
	if len(eua) != 6 || eua[0] != 0xf1 || eua[1] != 0x21 || eua[2] != 10 || eua[3] != 60 {
		t.Errorf("EUA % x", eua)
	}
	if c, _ := r.GGSNAddressForCPlane.GSNAddress(); c != h.ggsnA.String() {
		t.Errorf("GGSN address %s", c)
	}
	if r.PCO == nil || r.QoSProfile == nil || r.Recovery == nil {
		t.Errorf("missing PCO/QoS/Recovery in %v", r)
	}
	// Retransmission: same octets, still one context.
	again := h.roundTrip(t, req).(*message.CreatePDPContextResponse)
	if a, _ := message.Marshal(again); string(a) != string(mustMarshal(r)) || h.tab.Len() != 1 {
		t.Errorf("retransmitted Create PDP Context answered differently or made a second context (%d)", h.tab.Len())
	}
	tn, ok := h.tun.Get(breakout.TEID(teidU))
	if !ok || tn.PeerTEID != 0x101 || tn.Peer != netip.AddrPortFrom(h.sgsnA, 2152) {
		t.Errorf("tunnel %+v", tn)
	}
	// Update PDP Context: new SGSN user plane.
	h.seq++
	b, _ := message.Marshal(message.NewUpdatePDPContextRequest(teidC, h.seq,
		ie.NewTEIDDataI(0x201), ie.NewTEIDCPlane(0x200), ie.NewNSAPI(5),
		ie.NewGSNAddress(h.sgsnA.String()), ie.NewGSNAddress("127.0.20.250"), ie.NewQoSProfile([]byte{0x0b, 0x92, 0x1f})))
	u, ok := h.roundTrip(t, b).(*message.UpdatePDPContextResponse)
	if !ok || causeOf(t, u.Cause) != gtpv1.ResCauseRequestAccepted || u.TEID() != 0x200 {
		t.Fatalf("Update PDP Context Response %v", u)
	}
	if tn, _ := h.tun.Get(breakout.TEID(teidU)); tn.PeerTEID != 0x201 || tn.Peer.Addr() != netip.MustParseAddr("127.0.20.250") {
		t.Errorf("tunnel after update %+v", tn)
	}
	// Delete.
	h.seq++
	b, _ = message.Marshal(message.NewDeletePDPContextRequest(teidC, h.seq, ie.NewTeardownInd(true), ie.NewNSAPI(5)))
	d, ok := h.roundTrip(t, b).(*message.DeletePDPContextResponse)
	if !ok || causeOf(t, d.Cause) != gtpv1.ResCauseRequestAccepted || d.TEID() != 0x200 || h.tab.Len() != 0 {
		t.Fatalf("Delete PDP Context Response %v, %d left", d, h.tab.Len())
	}
	h.seq++
	b, _ = message.Marshal(message.NewDeletePDPContextRequest(teidC, h.seq, ie.NewTeardownInd(true), ie.NewNSAPI(5)))
	d = h.roundTrip(t, b).(*message.DeletePDPContextResponse)
	if causeOf(t, d.Cause) != gtpv1.ResCauseNonExistent || d.TEID() != 0 {
		t.Errorf("second delete: cause %d TEID %#x", causeOf(t, d.Cause), d.TEID())
	}
}

func mustMarshal(m message.Message) []byte {
	b, _ := message.Marshal(m)
	return b
}

func TestCreatePDPCauses(t *testing.T) {
	h := newHarness(t)
	for _, c := range []struct {
		name  string
		req   []byte
		cause uint8
	}{
		{"unknown IMSI", h.cpdp("901709999999999", "internet", 1), gtpv1.ResCauseUserAuthenticationFailed},
		{"unknown APN", h.cpdp("901700000000002", "nosuch", 1), gtpv1.ResCauseMissingOrUnknownAPN},
		{"no APN", h.cpdp("901700000000002", "internet", 1, ie.AccessPointName), gtpv1.ResCauseMissingOrUnknownAPN},
		{"no QoS", h.cpdp("901700000000002", "internet", 1, ie.QoSProfile), gtpv1.ResCauseMandatoryIEMissing},
		{"no NSAPI", h.cpdp("901700000000002", "internet", 1, ie.NSAPI), gtpv1.ResCauseMandatoryIEMissing},
	} {
		r, ok := h.roundTrip(t, c.req).(*message.CreatePDPContextResponse)
		if !ok {
			t.Fatalf("%s: wrong type", c.name)
		}
		if got := causeOf(t, r.Cause); got != c.cause {
			t.Errorf("%s: cause %d, want %d", c.name, got, c.cause)
		}
	}
	// Undecodable: Invalid message format (193).
	r := h.roundTrip(t, []byte{0x32, 16, 0, 6, 0, 0, 0, 0, 0, 9, 0, 0, 2, 0x09}).(*message.CreatePDPContextResponse)
	if got := causeOf(t, r.Cause); got != gtpv1.ResCauseInvalidMessageFormat {
		t.Errorf("undecodable: cause %d", got)
	}
	if h.tab.Len() != 0 {
		t.Errorf("%d contexts", h.tab.Len())
	}
}

func TestGGSNInitiatedDelete(t *testing.T) {
	h := newHarness(t)
	for i := range 3 {
		r := h.roundTrip(t, h.cpdp("90170000000001"+string(rune('0'+i)), "internet", uint32(0x1000*(i+1))))
		if causeOf(t, r.(*message.CreatePDPContextResponse).Cause) != gtpv1.ResCauseRequestAccepted {
			t.Fatal("create failed")
		}
	}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := h.c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			m, err := message.Parse(buf[:n])
			if err != nil {
				continue
			}
			if d, ok := m.(*message.DeletePDPContextRequest); ok && d.TeardownInd != nil && d.TeardownInd.TeardownInd() {
				resp, _ := message.Marshal(message.NewDeletePDPContextResponse(0x22000000, d.Sequence(), ie.NewCause(gtpv1.ResCauseRequestAccepted)))
				h.c.WriteToUDPAddrPort(resp, from)
			}
		}
	}()
	h.c.SetReadDeadline(time.Time{})
	res, err := h.g.DeletePDPContexts(context.Background(), nil)
	if err != nil || res.Selected != 3 || res.Answered != 3 || h.tab.Len() != 0 {
		t.Errorf("DeletePDPContexts = %+v, %v; %d left", res, err, h.tab.Len())
	}
}

// TestSGSNRestartRemovesItsContexts: a Create PDP Context with a new
// Recovery value from the same SGSN removes its old contexts first
// (TS 23.007).
func TestSGSNRestartRemovesItsContexts(t *testing.T) {
	h := newHarness(t)
	for i, imsi := range []string{"901700000000001", "901700000000002"} {
		r := h.roundTrip(t, h.cpdp(imsi, "internet", uint32(0x100*(i+1))))
		if causeOf(t, r.(*message.CreatePDPContextResponse).Cause) != gtpv1.ResCauseRequestAccepted {
			t.Fatal("create failed")
		}
	}
	h.seq++
	b, _ := message.Marshal(message.NewCreatePDPContextRequest(0, h.seq,
		ie.NewIMSI("901700000000003"), ie.NewRecovery(4), ie.NewTEIDDataI(0x901), ie.NewTEIDCPlane(0x900),
		ie.NewNSAPI(5), ie.NewAccessPointName("internet"),
		ie.NewGSNAddress(h.sgsnA.String()), ie.NewGSNAddress(h.sgsnA.String()), ie.NewQoSProfile([]byte{0x0b, 0x92, 0x1f})))
	r := h.roundTrip(t, b).(*message.CreatePDPContextResponse)
	if causeOf(t, r.Cause) != gtpv1.ResCauseRequestAccepted || h.tab.Len() != 1 {
		t.Errorf("after the SGSN restart: cause %d, %d contexts (want 1)", causeOf(t, r.Cause), h.tab.Len())
	}
	if _, ok := h.tab.ByBearer(session.KindGGSN, "901700000000003", 5); !ok {
		t.Error("the new context is missing")
	}
}
