package gtpc_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rendezvous-core/rendezvous/region/gtpc"
	"github.com/wmnsk/go-gtp/gtpv2/ie"
	"github.com/wmnsk/go-gtp/gtpv2/message"
)

// Addresses: this package's tests use 127.0.20.1–.49 (the pgw tests .50–.99,
// the ggsn tests .100–.149).

type testHandler struct {
	calls    atomic.Int64
	restarts chan gtpc.PeerRestart
	panicOn  uint8
}

func (h *testHandler) HandleRequest(r *gtpc.Request) (gtpc.Message, error) {
	n := h.calls.Add(1)
	if r.Header.Type == h.panicOn && h.panicOn != 0 {
		panic("injected")
	}
	if r.Header.Version != gtpc.V2 {
		return nil, nil
	}
	// The response carries the call count: a replay must not change it.
	return message.NewDeleteSessionResponse(r.Header.TEID, r.Header.Seq,
		ie.NewCause(16, 0, 0, 0, nil), ie.NewChargingID(uint32(n)), ie.New(ie.PrivateExtension, 0, make([]byte, len(r.Raw)%1000))), nil
}

func (h *testHandler) PeerRestarted(ev gtpc.PeerRestart) int {
	if h.restarts != nil {
		h.restarts <- ev
	}
	return 7
}

func newEndpoint(t *testing.T, addr string, dir string, mod func(*gtpc.Config)) (*gtpc.Endpoint, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := gtpc.Config{Addrs: []netip.AddrPort{netip.MustParseAddrPort(addr)}, StateDir: dir, Registerer: reg,
		Workers: 4, QueueLen: 64, T3: 40 * time.Millisecond, N3: 2, EchoInterval: -1,
		Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	ep, err := gtpc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close() })
	return ep, reg
}

type client struct {
	t *testing.T
	c *net.UDPConn
}

func dial(t *testing.T, local, remote string) *client {
	t.Helper()
	c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(local)),
		net.UDPAddrFromAddrPort(netip.MustParseAddrPort(remote)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c}
}

func (c *client) send(b []byte) {
	c.t.Helper()
	if _, err := c.c.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) recv() []byte {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 65536)
	n, err := c.c.Read(b)
	if err != nil {
		c.t.Fatal(err)
	}
	return b[:n]
}

func (c *client) roundTrip(b []byte) []byte { c.send(b); return c.recv() }

func echoV2(seq uint32, rc uint8) []byte {
	b, _ := message.Marshal(message.NewEchoRequest(seq, ie.NewRecovery(rc)))
	return b
}

func TestEchoRestartCounterPersisted(t *testing.T) {
	dir := t.TempDir()
	var got []uint8
	for range 3 {
		ep, _ := newEndpoint(t, "127.0.20.1:2123", dir, nil)
		c := dial(t, "127.0.20.2:0", "127.0.20.1:2123")
		resp := c.roundTrip(echoV2(0x123, 1))
		m, err := message.Parse(resp)
		if err != nil {
			t.Fatal(err)
		}
		er, ok := m.(*message.EchoResponse)
		if !ok || er.Sequence() != 0x123 {
			t.Fatalf("got %T seq %v", m, m.Sequence())
		}
		rc, _ := er.Recovery.Recovery()
		// GTPv1 Echo (TS 29.060 §7.2.2): Recovery IE 14 at offset 12.
		v1 := c.roundTrip([]byte{0x32, 1, 0, 4, 0, 0, 0, 0, 0x12, 0x34, 0, 0})
		if len(v1) != 14 || v1[1] != 2 || v1[8] != 0x12 || v1[9] != 0x34 || v1[12] != 14 || v1[13] != rc {
			t.Fatalf("v1 echo response % x, want recovery %d", v1, rc)
		}
		if rc != ep.RestartCounter() {
			t.Fatalf("echo recovery %d, RestartCounter %d", rc, ep.RestartCounter())
		}
		got = append(got, rc)
		if err := ep.Close(); err != nil {
			t.Fatal(err)
		}
		if err := ep.Close(); err != nil { // idempotent
			t.Fatal(err)
		}
	}
	if got[1] != got[0]+1 || got[2] != got[1]+1 {
		t.Errorf("restart counters over three starts: %v, want consecutive", got)
	}
}

func dsr(teid, seq uint32, pad int) []byte {
	b, _ := message.Marshal(message.NewDeleteSessionRequest(teid, seq, ie.NewEPSBearerID(5),
		ie.New(ie.PrivateExtension, 0, make([]byte, pad))))
	return b
}

func TestDuplicateRequestReplayed(t *testing.T) {
	h := &testHandler{}
	ep, reg := newEndpoint(t, "127.0.20.3:2123", t.TempDir(), nil)
	ep.Handle(gtpc.V2, h)
	c := dial(t, "127.0.20.4:0", "127.0.20.3:2123")
	req := dsr(0x01000001, 77, 0)
	first := c.roundTrip(req)
	second := c.roundTrip(req)
	if !bytes.Equal(first, second) {
		t.Errorf("replayed response differs:\n% x\n% x", first, second)
	}
	if n := h.calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
	// Same sequence number from another peer, or another sequence number,
	// is a new request.
	c2 := dial(t, "127.0.20.5:0", "127.0.20.3:2123")
	c2.roundTrip(req)
	c.roundTrip(dsr(0x01000001, 78, 0))
	if n := h.calls.Load(); n != 3 {
		t.Errorf("handler called %d times, want 3", n)
	}
	if d := metricSum(t, reg, "rendezvous_gtpc_duplicate_requests_total"); d != 1 {
		t.Errorf("duplicates metric %v", d)
	}
}

func metricSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.Metric {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func TestFullSizeDatagram(t *testing.T) {
	h := &testHandler{}
	ep, _ := newEndpoint(t, "127.0.20.6:2123", t.TempDir(), nil)
	ep.Handle(gtpc.V2, h)
	c := dial(t, "127.0.20.7:0", "127.0.20.6:2123")
	req := dsr(1, 1, 60000) // ≫ 1500 (gtp.md #6)
	resp := c.roundTrip(req)
	m, err := message.Parse(resp)
	if err != nil {
		t.Fatal(err)
	}
	r := m.(*message.DeleteSessionResponse)
	if len(r.PrivateExtension.Payload) != len(req)%1000 {
		t.Errorf("handler saw %d octets, sent %d", len(r.PrivateExtension.Payload), len(req))
	}
}

func TestRequestRetransmitsAndTimesOut(t *testing.T) {
	ep, reg := newEndpoint(t, "127.0.20.8:2123", t.TempDir(), nil)
	peer, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.20.9:2123")))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	var copies [][]byte
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, 65536)
		for {
			n, _, err := peer.ReadFromUDPAddrPort(b)
			if err != nil {
				return
			}
			mu.Lock()
			copies = append(copies, append([]byte(nil), b[:n]...))
			mu.Unlock()
		}
	}()
	_, err = ep.Request(context.Background(), gtpc.V2, netip.Addr{}, netip.MustParseAddrPort("127.0.20.9:2123"),
		func(seq uint32) ([]byte, error) {
			return message.Marshal(message.NewDeleteBearerRequest(0x55, seq, ie.NewEPSBearerID(5)))
		})
	if !errors.Is(err, gtpc.ErrTimeout) {
		t.Fatalf("Request: %v, want ErrTimeout", err)
	}
	peer.Close()
	<-done
	// N3 = 2: the original and two retransmissions, octet for octet.
	if len(copies) != 3 || !bytes.Equal(copies[0], copies[1]) || !bytes.Equal(copies[0], copies[2]) {
		t.Errorf("peer got %d copies (want 3 identical)", len(copies))
	}
	if v := metricSum(t, reg, "rendezvous_gtpc_retransmissions_total"); v != 2 {
		t.Errorf("retransmissions metric %v", v)
	}
}

func TestRequestAnsweredAfterRetransmission(t *testing.T) {
	ep, _ := newEndpoint(t, "127.0.20.10:2123", t.TempDir(), nil)
	peer, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.20.11:2123")))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	go func() {
		b := make([]byte, 65536)
		for i := 0; ; i++ {
			n, from, err := peer.ReadFromUDPAddrPort(b)
			if err != nil {
				return
			}
			if i == 0 {
				continue // lose the first copy
			}
			h, _ := gtpc.ParseHeader(b[:n])
			resp, _ := message.Marshal(message.NewDeleteBearerResponse(0x99, h.Seq, ie.NewCause(16, 0, 0, 0, nil)))
			peer.WriteToUDPAddrPort(resp, from)
		}
	}()
	resp, err := ep.Request(context.Background(), gtpc.V2, netip.Addr{}, netip.MustParseAddrPort("127.0.20.11:2123"),
		func(seq uint32) ([]byte, error) {
			return message.Marshal(message.NewDeleteBearerRequest(0x55, seq, ie.NewEPSBearerID(5)))
		})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := message.Parse(resp); err != nil || m.MessageType() != message.MsgTypeDeleteBearerResponse {
		t.Fatalf("response %v %v", m, err)
	}
	// Our own Echo to the peer: closed endpoint fails cleanly.
	ep.Close()
	if _, err := ep.Echo(context.Background(), gtpc.V2, netip.Addr{}, netip.MustParseAddrPort("127.0.20.11:2123")); !errors.Is(err, gtpc.ErrClosed) {
		t.Errorf("Echo after Close: %v", err)
	}
}

func TestPeerRestartDetected(t *testing.T) {
	h := &testHandler{restarts: make(chan gtpc.PeerRestart, 4)}
	reported := make(chan gtpc.PeerRestart, 4)
	ep, _ := newEndpoint(t, "127.0.20.12:2123", t.TempDir(), func(c *gtpc.Config) {
		c.OnPeerRestart = func(ev gtpc.PeerRestart) { reported <- ev }
	})
	ep.Handle(gtpc.V2, h)
	c := dial(t, "127.0.20.13:0", "127.0.20.12:2123")
	c.roundTrip(echoV2(1, 5))
	c.roundTrip(echoV2(2, 5))
	select {
	case ev := <-reported:
		t.Fatalf("restart reported for an unchanged counter: %+v", ev)
	default:
	}
	c.roundTrip(echoV2(3, 6))
	select {
	case ev := <-reported:
		want := gtpc.PeerRestart{Version: gtpc.V2, Peer: netip.MustParseAddr("127.0.20.13"), Old: 5, New: 6, Removed: 7}
		if ev != want {
			t.Errorf("reported %+v, want %+v", ev, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no restart reported")
	}
	if len(h.restarts) != 1 {
		t.Errorf("handler told %d times", len(h.restarts))
	}
	// Our Echo to the peer reads its Recovery too.
	if rc, ok := ep.PeerRecovery(gtpc.V2, netip.MustParseAddr("127.0.20.13")); !ok || rc != 6 {
		t.Errorf("PeerRecovery = %d, %v", rc, ok)
	}
}

func TestEchoLoopFindsRestartAndPathFailure(t *testing.T) {
	// A peer that answers Echo with Recovery 1, then 2, then stops.
	peer, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.20.15:2123")))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	var answered atomic.Int32
	go func() {
		b := make([]byte, 65536)
		for {
			n, from, err := peer.ReadFromUDPAddrPort(b)
			if err != nil {
				return
			}
			h, err := gtpc.ParseHeader(b[:n])
			if err != nil || h.Type != 1 {
				continue
			}
			i := answered.Add(1)
			if i > 2 {
				continue
			}
			resp, _ := message.Marshal(message.NewEchoResponse(h.Seq, ie.NewRecovery(uint8(i))))
			peer.WriteToUDPAddrPort(resp, from)
		}
	}()
	restarts := make(chan gtpc.PeerRestart, 4)
	failures := make(chan netip.Addr, 4)
	newEndpoint(t, "127.0.20.14:2123", t.TempDir(), func(c *gtpc.Config) {
		c.EchoInterval = 50 * time.Millisecond
		c.T3, c.N3 = 20*time.Millisecond, 1
		c.OnPeerRestart = func(ev gtpc.PeerRestart) { restarts <- ev }
		c.OnPathFailure = func(_ gtpc.Version, a netip.Addr) { failures <- a }
	})
	// The peer becomes known by talking to us (from another socket on its
	// address, ephemeral port).
	p := dial(t, "127.0.20.15:0", "127.0.20.14:2123")
	p.send(echoV2(9, 1))
	p.recv()
	select {
	case ev := <-restarts:
		if ev.Old != 1 || ev.New != 2 {
			t.Errorf("restart %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the Echo loop did not see the peer's new Recovery")
	}
	select {
	case a := <-failures:
		if a != netip.MustParseAddr("127.0.20.15") {
			t.Errorf("path failure for %v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no path failure reported")
	}
}

func TestMalformedAndPanicsDoNotDisturb(t *testing.T) {
	h := &testHandler{panicOn: 99}
	ep, reg := newEndpoint(t, "127.0.20.16:2123", t.TempDir(), nil)
	ep.Handle(gtpc.V2, h)
	c := dial(t, "127.0.20.17:0", "127.0.20.16:2123")
	bad := [][]byte{
		{},
		{0x48},
		{0x48, 32, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 1, 0},           // length beyond the datagram
		{0x32, 16, 0, 200, 0, 0, 0, 0, 0, 1, 0, 0},               // GTPv1 truncated
		{0x22, 16, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0},                 // GTP' (PT=0)
		{0x60, 1, 0, 4, 0, 0, 0, 0},                              // version 3
		{0x48, 32, 0, 8, 0, 0, 0, 0, 0, 0, 1, 0},                 // empty CSR: handler decides
		{0x40, 2, 0, 4, 0, 0, 5, 0},                              // unexpected response
		{0x48, 99, 0, 8, 0, 0, 0, 1, 0, 0, 2, 0},                 // handler panics
		{0x48, 99, 0, 8, 0, 0, 0, 1, 0, 0, 2, 0},                 // again (cache entry was dropped)
		bytes.Repeat([]byte{0xff}, 65000),                        // junk
		binary.BigEndian.AppendUint32([]byte{0x48, 36, 0, 8}, 0), // short v2 with TEID
	}
	for _, b := range bad {
		c.send(b)
	}
	// A well-formed request still gets its answer (after those to the
	// empty CSR, which the test handler answers, and to version 3).
	c.send(dsr(0x01000001, 500, 0))
	vnsi := false
	for {
		b := c.recv()
		h, err := gtpc.ParseHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		vnsi = vnsi || h.Type == 3
		if h.Seq == 500 {
			break
		}
	}
	if !vnsi {
		t.Error("no Version Not Supported Indication for version 3")
	}
	if v := metricSum(t, reg, "rendezvous_gtpc_panics_total"); v != 2 {
		t.Errorf("panics metric %v, want 2", v)
	}
	if v := metricSum(t, reg, "rendezvous_gtpc_malformed_total"); v < 6 {
		t.Errorf("malformed metric %v, want ≥ 6", v)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []gtpc.Config{
		{StateDir: t.TempDir()},
		{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.20.18:2123")}},
		{Addrs: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:2123")}, StateDir: t.TempDir()},
	} {
		if ep, err := gtpc.New(cfg); err == nil {
			ep.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

type blockingHandler struct {
	testHandler
	release chan struct{}
}

func (h *blockingHandler) HandleRequest(r *gtpc.Request) (gtpc.Message, error) {
	<-h.release
	return h.testHandler.HandleRequest(r)
}

// TestDuplicateWhileInProgress: a retransmission that arrives while the
// original is still being handled (a slow registry lookup) waits on the
// same worker and is answered from the cache: one handling, two identical
// responses.
func TestDuplicateWhileInProgress(t *testing.T) {
	h := &blockingHandler{release: make(chan struct{})}
	ep, _ := newEndpoint(t, "127.0.20.19:2123", t.TempDir(), nil)
	ep.Handle(gtpc.V2, h)
	c := dial(t, "127.0.20.20:0", "127.0.20.19:2123")
	req := dsr(0x01000002, 900, 0)
	c.send(req)
	c.send(req)
	time.Sleep(50 * time.Millisecond) // both queued (not a timing assertion)
	close(h.release)
	first, second := c.recv(), c.recv()
	if !bytes.Equal(first, second) || h.calls.Load() != 1 {
		t.Errorf("handler called %d times; responses equal: %v", h.calls.Load(), bytes.Equal(first, second))
	}
}

// TestResponseCacheEvictsOldest: a full cache drops its oldest response,
// never the newest.
func TestResponseCacheEvictsOldest(t *testing.T) {
	h := &testHandler{}
	ep, _ := newEndpoint(t, "127.0.20.21:2123", t.TempDir(), func(c *gtpc.Config) { c.MaxCachedResponses = 2 })
	ep.Handle(gtpc.V2, h)
	c := dial(t, "127.0.20.22:0", "127.0.20.21:2123")
	a, b, d := dsr(1, 10, 0), dsr(1, 11, 0), dsr(1, 12, 0)
	c.roundTrip(a)
	c.roundTrip(b)
	first := c.roundTrip(d)
	if again := c.roundTrip(d); !bytes.Equal(first, again) || h.calls.Load() != 3 {
		t.Errorf("newest not replayed: %d calls", h.calls.Load())
	}
	c.roundTrip(b) // still cached
	if n := h.calls.Load(); n != 3 {
		t.Errorf("second newest not replayed: %d calls", n)
	}
	c.roundTrip(a) // evicted: handled again
	if n := h.calls.Load(); n != 4 {
		t.Errorf("oldest: %d calls, want 4", n)
	}
}
