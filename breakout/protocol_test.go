package breakout

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wmnsk/go-gtp/gtpv1/ie"
	"github.com/wmnsk/go-gtp/gtpv1/message"
)

type fakeClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// ipv4UDP builds an IPv4/UDP packet src -> dst with n octets of payload.
func ipv4UDP(src, dst netip.Addr, n int) []byte {
	p := make([]byte, 28+n)
	p[0], p[8], p[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(p[10:12], ^uint16(sum))
	binary.BigEndian.PutUint16(p[20:22], 4000)
	binary.BigEndian.PutUint16(p[22:24], 9)
	binary.BigEndian.PutUint16(p[24:26], uint16(8+n))
	return p
}

func gpdu(t testing.TB, teid TEID, inner []byte) []byte {
	b, err := message.NewTPDU(uint32(teid), inner).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readGTP(t testing.TB, c *net.UDPConn) message.Message {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("read GTP-U: %v", err)
	}
	m, err := message.Parse(buf[:n])
	if err != nil {
		t.Fatalf("go-gtp cannot parse %x: %v", buf[:n], err)
	}
	return m
}

// TestProtocol covers TS 29.281 behaviour on real sockets and a real TUN in
// a private namespace: Echo, Error Indication rate limiting, peer and UE
// anti-spoofing, malformed headers, extension headers, End Marker, downlink
// encapsulation, Remove, and the metrics.
func TestProtocol(t *testing.T) {
	requireRoot(t)
	ns := newNS(t, "proto")
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	reg := prometheus.NewRegistry()
	errInds := make(chan TEID, 1)
	bo, err := New(Config{
		Name: "proto", Listen: netip.MustParseAddrPort("127.0.30.1:2152"), NetNS: ns.path(), Workers: 2,
		TUNName: "rdvbo-p0", Pools: []netip.Prefix{netip.MustParsePrefix("10.45.0.0/16")},
		TUNAddr: netip.MustParsePrefix("10.45.0.1/32"), Now: clock.Now, Registerer: reg,
		OnErrorIndication: func(_ netip.AddrPort, teid TEID) {
			select {
			case errInds <- teid:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bo.Close() })
	// Uplink packets to the "internet" vanish silently (no ICMP back).
	ns.ip(t, "route", "add", "blackhole", "198.51.100.0/24")
	peer := ns.listenUDP(t, "127.0.30.2:2152")
	spoofer := ns.listenUDP(t, "127.0.30.3:2152")
	ue := netip.MustParseAddr("10.45.0.9")
	tun := Tunnel{LocalTEID: 0x10, PeerTEID: 0x20, Peer: netip.MustParseAddrPort("127.0.30.2:2152"), UE: ue, IMSI: "901700000000009"}
	if err := bo.Install(tun); err != nil {
		t.Fatal(err)
	}
	to := net.UDPAddrFromAddrPort(bo.LocalAddr())
	send := func(c *net.UDPConn, b []byte) {
		t.Helper()
		if _, err := c.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
	}
	dropped := func(r string) func() uint64 { return func() uint64 { return bo.Stats().Dropped[r] } }
	internet := netip.MustParseAddr("198.51.100.1")

	t.Run("Echo", func(t *testing.T) {
		b, _ := message.NewEchoRequest(0x0707).Marshal()
		send(peer, b)
		m := readGTP(t, peer)
		er, ok := m.(*message.EchoResponse)
		if !ok || er.Sequence() != 0x0707 || er.TEID() != 0 || er.Recovery == nil || er.Recovery.MustRecovery() != 0 {
			t.Fatalf("got %v", m)
		}
	})

	t.Run("UnknownTEID/one rate-limited Error Indication per burst", func(t *testing.T) {
		for burst := 1; burst <= 2; burst++ {
			for i := 0; i < 50; i++ {
				send(peer, gpdu(t, 0xdead, ipv4UDP(ue, internet, 10)))
			}
			waitFor(t, "the burst to be processed", func() bool {
				s := bo.Stats()
				return s.ErrorIndicationsSent+s.ErrorIndicationsLimited == uint64(50*burst)
			})
			if s := bo.Stats(); s.ErrorIndicationsSent != uint64(burst) {
				t.Fatalf("burst %d: %d Error Indications sent, want %d", burst, s.ErrorIndicationsSent, burst)
			}
			m := readGTP(t, peer)
			ei, ok := m.(*message.ErrorIndication)
			if !ok || ei.TEID() != 0 {
				t.Fatalf("got %v", m)
			}
			if v, _ := ei.TEIDDataI.TEID(); v != 0xdead {
				t.Errorf("TEID Data I %#x", v)
			}
			if a, _ := ei.GTPUPeerAddress.GSNAddress(); a != "127.0.30.1" {
				t.Errorf("GTP-U Peer Address %s", a)
			}
			clock.Advance(time.Second)
		}
		if got := dropped("unknown_teid")(); got != 100 {
			t.Errorf("unknown_teid drops %d, want 100", got)
		}
	})

	t.Run("SpoofedPeer", func(t *testing.T) {
		send(spoofer, gpdu(t, tun.LocalTEID, ipv4UDP(ue, internet, 10)))
		waitFor(t, "spoofed_peer drop", func() bool { return dropped("spoofed_peer")() == 1 })
		if c, _ := bo.Counters(tun.LocalTEID); c.Dropped != 1 || c.PacketsUp != 0 {
			t.Errorf("counters %+v", c)
		}
	})
	t.Run("SpoofedUE", func(t *testing.T) {
		send(peer, gpdu(t, tun.LocalTEID, ipv4UDP(netip.MustParseAddr("10.45.0.99"), internet, 10)))
		waitFor(t, "spoofed_ue drop", func() bool { return dropped("spoofed_ue")() == 1 })
		if c, _ := bo.Counters(tun.LocalTEID); c.Dropped != 2 || c.PacketsUp != 0 {
			t.Errorf("counters %+v", c)
		}
	})

	t.Run("Malformed", func(t *testing.T) {
		for _, tc := range []struct{ hex, reason string }{
			{"30ff00", "short"},
			{"30ff00ff00000010" + inner4, "length"},
			{"34ff000800000010000000850000000000", "extension_chain"},
			{"34ff000800000010000000850200000000", "extension_chain"},
			{"34ff000800000010000000e101000000", "extension_unsupported"},
			{"48ff000800000010" + inner4, "version"},
			{"20ff001c00000010" + inner4, "protocol_type"},
			{"30ff001c00000010" + "4500ffff" + inner4[8:], "inner_malformed"},
			{"30aa000000000010", "unknown_type"},
		} {
			before := bo.Stats().Dropped[tc.reason]
			send(peer, mustHex(t, tc.hex))
			waitFor(t, tc.reason+" drop of "+tc.hex, func() bool { return dropped(tc.reason)() == before+1 })
		}
	})

	t.Run("Uplink with extension headers and sequence number", func(t *testing.T) {
		inner := ipv4UDP(ue, internet, 100)
		b, err := message.NewTPDUWithExtentionHeader(uint32(tun.LocalTEID), inner,
			message.NewExtensionHeader(message.ExtHeaderTypePDUSessionContainer, []byte{0x10, 0x09}, message.ExtHeaderTypeNoMoreExtensionHeaders)).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		send(peer, b)
		waitFor(t, "uplink packet", func() bool { c, _ := bo.Counters(tun.LocalTEID); return c.PacketsUp == 1 })
		if c, _ := bo.Counters(tun.LocalTEID); c.BytesUp != uint64(len(inner)) {
			t.Errorf("counters %+v, inner %d octets", c, len(inner))
		}
	})

	t.Run("Uplink jumbo datagram across both receive buffers", func(t *testing.T) {
		before, _ := bo.Counters(tun.LocalTEID)
		inner := ipv4UDP(ue, internet, 5000)
		send(peer, gpdu(t, tun.LocalTEID, inner))
		waitFor(t, "the jumbo uplink packet", func() bool { c, _ := bo.Counters(tun.LocalTEID); return c.PacketsUp == before.PacketsUp+1 })
		if c, _ := bo.Counters(tun.LocalTEID); c.BytesUp != before.BytesUp+uint64(len(inner)) {
			t.Errorf("counters %+v", c)
		}
		// Longer than both buffers: truncated by the kernel, dropped, counted.
		lengthDrops := bo.Stats().Dropped["length"]
		send(peer, gpdu(t, tun.LocalTEID, ipv4UDP(ue, internet, 9300)))
		waitFor(t, "the oversize datagram to be dropped", func() bool { return bo.Stats().Dropped["length"] == lengthDrops+1 })
	})

	t.Run("Downlink", func(t *testing.T) {
		var c *net.UDPConn
		ns.do(t, func() (err error) {
			c, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: ue.AsSlice(), Port: 9})
			return err
		})
		defer c.Close()
		if _, err := c.Write([]byte("downlink!")); err != nil {
			t.Fatal(err)
		}
		m := readGTP(t, peer)
		tp, ok := m.(*message.TPDU)
		if !ok || TEID(tp.TEID()) != tun.PeerTEID {
			t.Fatalf("got %v", m)
		}
		p := tp.Decapsulate()
		if _, dst, ok := innerAddrs(p); !ok || dst != ue || string(p[28:]) != "downlink!" {
			t.Fatalf("inner %x", p)
		}
		if cs, _ := bo.Counters(tun.LocalTEID); cs.PacketsDown != 1 || cs.BytesDown != uint64(len(p)) {
			t.Errorf("counters %+v", cs)
		}
		// No tunnel for this UE: dropped and counted.
		ns.do(t, func() error {
			c2, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(10, 45, 0, 77), Port: 9})
			if err != nil {
				return err
			}
			defer c2.Close()
			_, err = c2.Write([]byte("nobody"))
			return err
		})
		waitFor(t, "no_session drop", func() bool { return dropped("no_session")() >= 1 })
	})

	t.Run("EndMarker", func(t *testing.T) {
		em := message.NewEndMarker()
		em.SetTEID(uint32(tun.LocalTEID))
		b, _ := em.Marshal()
		send(peer, b)
		waitFor(t, "End Marker", func() bool { return bo.Stats().EndMarkers == 1 })
		// Moving the downlink to another peer sends an End Marker on the
		// old path (TS 29.281 §7.3.2).
		moved := tun
		moved.Peer, moved.PeerTEID = netip.MustParseAddrPort("127.0.30.4:2152"), 0x21
		if err := bo.Install(moved); err != nil {
			t.Fatal(err)
		}
		m := readGTP(t, peer)
		if m.MessageType() != message.MsgTypeEndMarker || TEID(m.TEID()) != tun.PeerTEID {
			t.Fatalf("got %v", m)
		}
		if err := bo.Install(tun); err != nil {
			t.Fatal(err)
		}
		// Counters survive a replacing Install.
		if c, _ := bo.Counters(tun.LocalTEID); c.PacketsUp != 2 || c.PacketsDown != 1 {
			t.Errorf("counters after reinstall %+v", c)
		}
	})

	t.Run("Error Indication from the peer reaches the hook", func(t *testing.T) {
		b, err := message.NewErrorIndication(0, 0, ie.NewTEIDDataI(uint32(tun.PeerTEID)), ie.NewGSNAddress("127.0.30.2")).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		send(peer, b)
		select {
		case teid := <-errInds:
			if teid != tun.PeerTEID {
				t.Fatalf("hook got TEID %#x, want %#x", teid, tun.PeerTEID)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("OnErrorIndication not called")
		}
	})

	t.Run("Install validation", func(t *testing.T) {
		for _, bad := range []Tunnel{
			{LocalTEID: 0, Peer: tun.Peer, UE: netip.MustParseAddr("10.45.0.50")},
			{LocalTEID: 0x11, Peer: netip.MustParseAddrPort("[2001:db8::1]:2152"), UE: netip.MustParseAddr("10.45.0.50")},
			{LocalTEID: 0x11, Peer: tun.Peer},
		} {
			if err := bo.Install(bad); !errors.Is(err, ErrBadTunnel) {
				t.Errorf("Install(%+v) = %v, want ErrBadTunnel", bad, err)
			}
		}
		if err := bo.Install(Tunnel{LocalTEID: 0x11, Peer: tun.Peer, UE: ue}); !errors.Is(err, ErrAddressInUse) {
			t.Errorf("Install with a UE in use = %v", err)
		}
	})

	t.Run("Metrics", func(t *testing.T) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, mf := range mfs {
			if mf.GetName() != "rdv_breakout_dropped_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" && l.GetValue() == "spoofed_peer" {
						found = m.GetCounter().GetValue() == 1
					}
				}
			}
		}
		if !found {
			t.Errorf("rdv_breakout_dropped_total{reason=spoofed_peer} != 1")
		}
	})

	t.Run("Remove", func(t *testing.T) {
		c, err := bo.Remove(tun.LocalTEID)
		if err != nil || c.PacketsUp != 2 || c.PacketsDown != 1 || c.Dropped != 3 { // spoofed peer, spoofed UE, malformed inner
			t.Fatalf("Remove = %+v, %v", c, err)
		}
		if _, err := bo.Remove(tun.LocalTEID); !errors.Is(err, ErrUnknownTEID) {
			t.Fatalf("second Remove = %v", err)
		}
		if _, ok := bo.Counters(tun.LocalTEID); ok || bo.Len() != 0 {
			t.Fatalf("tunnel still there")
		}
	})
}

// TestSeveralNodesOneProcess: the lab runs one breakout per region node in
// one process and one namespace, with their own listen addresses, TUN
// devices, pools and nftables tables, on a shared Registerer.
func TestSeveralNodesOneProcess(t *testing.T) {
	requireRoot(t)
	ns := newNS(t, "multi")
	reg := prometheus.NewRegistry()
	goroutines := runtime.NumGoroutine()
	var nodes []*Breakout
	for i, name := range []string{"jp1", "us1"} {
		cfg := Config{
			Name: name, Listen: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 30, byte(10 + i)}), 2152), NetNS: ns.path(),
			Workers: 2, Pools: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(50 + i), 0, 0}), 16)}, Registerer: reg,
		}
		if i == 1 {
			cfg.NATAddr = netip.MustParseAddr("192.0.2.1") // snat instead of masquerade
		}
		b, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		nodes = append(nodes, b)
	}
	_, err := New(Config{Name: "dup", Listen: nodes[0].LocalAddr(), NetNS: ns.path(), Workers: 1, Registerer: reg})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("a second breakout on %v: %v, want address already in use", nodes[0].LocalAddr(), err)
	}
	peer := ns.listenUDP(t, "127.0.30.2:2152")
	for i, b := range nodes {
		ue := netip.AddrFrom4([4]byte{10, byte(50 + i), 0, 2})
		if err := b.Install(Tunnel{LocalTEID: 1, PeerTEID: 2, Peer: netip.MustParseAddrPort("127.0.30.2:2152"), UE: ue}); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.WriteToUDP(gpdu(t, 1, ipv4UDP(ue, netip.MustParseAddr("198.51.100.1"), 10)), net.UDPAddrFromAddrPort(b.LocalAddr())); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "uplink on "+b.cfg.Name, func() bool { c, _ := b.Counters(1); return c.PacketsUp == 1 })
	}
	// Close stops every goroutine the nodes started.
	for _, b := range nodes {
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= goroutines })
}

func TestNewErrors(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Name: "bad name!", Listen: netip.MustParseAddrPort("127.0.30.1:2152")},
		{Name: "x", Listen: netip.MustParseAddrPort("0.0.0.0:2152")},
		{Name: "x", Listen: netip.MustParseAddrPort("127.0.30.1:2152"), Workers: 65},
		{Name: "x", Listen: netip.MustParseAddrPort("127.0.30.1:2152"), MTU: 100},
		{Name: "x", Listen: netip.MustParseAddrPort("127.0.30.1:2152"), NetNS: "/nonexistent/netns"},
	} {
		if b, err := New(cfg); err == nil || !strings.HasPrefix(err.Error(), "breakout: ") {
			if b != nil {
				b.Close()
			}
			t.Errorf("New(%+v) = %v", cfg, err)
		}
	}
}

// TestWithoutNetAdmin: without CAP_NET_ADMIN, New says what it needs. As
// root, the test re-runs itself with CAP_NET_ADMIN removed (setpriv).
func TestWithoutNetAdmin(t *testing.T) {
	if os.Getenv("RDVBO_UNPRIVILEGED_CHILD") == "1" {
		_, err := New(Config{Name: "nopriv", Listen: netip.MustParseAddrPort("127.0.30.1:2152"), TUNName: "rdvbo-np0"})
		if !errors.Is(err, ErrNeedNetAdmin) {
			t.Fatalf("New without CAP_NET_ADMIN = %v, want ErrNeedNetAdmin", err)
		}
		t.Logf("error: %v", err)
		return
	}
	if os.Geteuid() != 0 {
		_, err := New(Config{Name: "nopriv", Listen: netip.MustParseAddrPort("127.0.30.1:2152"), TUNName: "rdvbo-np0"})
		if !errors.Is(err, ErrNeedNetAdmin) {
			t.Fatalf("New without root = %v, want ErrNeedNetAdmin", err)
		}
		return
	}
	requireRoot(t, "setpriv")
	ns := newNS(t, "nopriv")
	cmd := exec.Command("ip", "netns", "exec", ns.name, "setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--",
		os.Args[0], "-test.run=^TestWithoutNetAdmin$", "-test.v")
	cmd.Env = append(os.Environ(), "RDVBO_UNPRIVILEGED_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "CAP_NET_ADMIN") {
		t.Fatalf("child output lacks the explanation:\n%s", out)
	}
	t.Logf("%s", out)
}

// TestInstallRemoveUnderTraffic: the control plane churns tunnels while
// the workers forward; under -race this checks the lock-free tables, and
// every packet is accounted for (forwarded or dropped as unknown TEID).
func TestInstallRemoveUnderTraffic(t *testing.T) {
	requireRoot(t)
	ns := newNS(t, "churn")
	ns.ip(t, "route", "add", "blackhole", "198.51.100.0/24")
	bo, err := New(Config{
		Name: "churn", Listen: netip.MustParseAddrPort("127.0.30.1:2152"), NetNS: ns.path(), Workers: 2,
		TUNName: "rdvbo-c0", Pools: []netip.Prefix{netip.MustParsePrefix("10.45.0.0/16")}, NoNAT: true,
		ErrorIndicationRate: 1e6, ErrorIndicationBurst: 1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bo.Close()
	const tunnels, packets = 32, 4000
	peerAP := netip.MustParseAddrPort("127.0.30.2:2152")
	peer := ns.listenUDP(t, peerAP.String())
	ue := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 45, 1, byte(i)}) }
	pkts := make([][]byte, tunnels)
	for i := range pkts {
		pkts[i] = gpdu(t, TEID(i+1), ipv4UDP(ue(i), netip.MustParseAddr("198.51.100.1"), 20))
	}
	stop := make(chan struct{})
	churned := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				churned <- n
				return
			default:
			}
			i := n % tunnels
			tn := Tunnel{LocalTEID: TEID(i + 1), PeerTEID: TEID(i + 100), Peer: peerAP, UE: ue(i)}
			if n%3 == 2 {
				bo.Remove(tn.LocalTEID)
			} else if err := bo.Install(tn); err != nil {
				t.Error(err)
			}
			n++
		}
	}()
	to := net.UDPAddrFromAddrPort(bo.LocalAddr())
	for i := 0; i < packets; i++ {
		if _, err := peer.WriteToUDP(pkts[i%tunnels], to); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	t.Logf("%d installs/removes during the run", <-churned)
	waitFor(t, "every packet to be accounted for", func() bool {
		s := bo.Stats()
		return s.PacketsUp+s.Dropped["unknown_teid"] == packets
	})
	if s := bo.Stats(); s.PacketsUp == 0 || len(s.Dropped) > 1 {
		t.Errorf("stats %+v", s)
	}
}
