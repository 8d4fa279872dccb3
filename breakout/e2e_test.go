package breakout

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// TestEndToEnd: a device/SGW namespace tunnels ICMP, UDP and TCP through
// GTP-U to the breakout's node namespace (TUN + routes + nftables NAT),
// which forwards to a server in an "internet" namespace. The server sees
// the node's NAT address; replies come back GTP-U encapsulated; the
// breakout's counters match what the SGW side sent and received. Then MTU
// handling (fragmentation with DF clear, ICMP "fragmentation needed" with
// DF set) and teardown on Close.
func TestEndToEnd(t *testing.T) {
	requireRoot(t)
	dev, node, inet := newNS(t, "dev"), newNS(t, "node"), newNS(t, "inet")
	veth(t, dev, "rdvbo-d0", "10.99.1.2/24", node, "rdvbo-n0", "10.99.1.1/24")
	veth(t, node, "rdvbo-n1", "198.51.100.254/24", inet, "rdvbo-i0", "198.51.100.1/24")
	// The internet has no route to the UE pool: replies only come back
	// through the node's source NAT.

	const ueTUN, nodeTUN = "rdvbo-ue0", "rdvbo-gw0"
	pool := netip.MustParsePrefix("10.45.0.0/16")
	ue := netip.MustParseAddr("10.45.0.2")
	bo, err := New(Config{
		Name: "e2e", Listen: netip.MustParseAddrPort("10.99.1.1:2152"), NetNS: node.path(),
		Workers: 2, TUNName: nodeTUN, Pools: []netip.Prefix{pool}, NATInterface: "rdvbo-n1",
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			bo.Close()
		}
	})
	tun := Tunnel{LocalTEID: 0x1001, PeerTEID: 0x2001, Peer: netip.MustParseAddrPort("10.99.1.2:2152"), UE: ue, IMSI: "901700000000001"}
	if err := bo.Install(tun); err != nil {
		t.Fatal(err)
	}
	s := newSGW(t, dev, ueTUN, netip.PrefixFrom(ue, 32), tun.Peer, bo.LocalAddr(), tun.LocalTEID, tun.PeerTEID)
	dev.ip(t, "route", "add", "198.51.100.0/24", "dev", ueTUN)

	// Servers in the internet namespace record who they saw.
	var mu sync.Mutex // guards seen, bigUDP
	var seen []netip.Addr
	var bigUDP []int
	record := func(a netip.Addr) {
		mu.Lock()
		seen = append(seen, a.Unmap())
		mu.Unlock()
	}
	udpSrv := inet.listenUDP(t, "198.51.100.1:7")
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := udpSrv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			record(from.Addr())
			if n > 200 {
				mu.Lock()
				bigUDP = append(bigUDP, n)
				mu.Unlock()
				continue
			}
			udpSrv.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	var tcpLn net.Listener
	inet.do(t, func() (err error) { tcpLn, err = net.Listen("tcp4", "198.51.100.1:7"); return err })
	t.Cleanup(func() { tcpLn.Close() })
	go func() {
		for {
			c, err := tcpLn.Accept()
			if err != nil {
				return
			}
			record(netip.MustParseAddrPort(c.RemoteAddr().String()).Addr())
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(line))
				}
			}()
		}
	}()

	// The NAT table exists in the node namespace.
	nft, err := nftables.New(nftables.WithNetNSFd(int(node.h)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nft.ListTableOfFamily("rdv_e2e", nftables.TableFamilyINet); err != nil {
		t.Fatalf("nftables table rdv_e2e: %v", err)
	}

	t.Run("ICMP", func(t *testing.T) {
		var c net.PacketConn
		dev.do(t, func() (err error) { c, err = net.ListenPacket("ip4:icmp", ue.String()); return err })
		defer c.Close()
		buf := make([]byte, 1500)
		for seq := 1; seq <= 3; seq++ {
			req, err := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 0x4242, Seq: seq, Data: []byte("rdvbo ping")}}).Marshal(nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.WriteTo(req, &net.IPAddr{IP: net.IPv4(198, 51, 100, 1)}); err != nil {
				t.Fatal(err)
			}
			for {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, from, err := c.ReadFrom(buf)
				if err != nil {
					t.Fatalf("echo reply %d: %v", seq, err)
				}
				m, err := icmp.ParseMessage(1, buf[:n])
				if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
					continue
				}
				if e, ok := m.Body.(*icmp.Echo); ok && e.Seq == seq && from.String() == "198.51.100.1" {
					break
				}
			}
		}
	})
	t.Run("UDP", func(t *testing.T) {
		var c *net.UDPConn
		dev.do(t, func() (err error) {
			c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.51.100.1:7")))
			return err
		})
		defer c.Close()
		buf := make([]byte, 100)
		for i := 0; i < 5; i++ {
			if _, err := c.Write([]byte("hello udp")); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != "hello udp" {
				t.Fatalf("echo %d: %q %v", i, buf[:n], err)
			}
		}
	})
	t.Run("TCP", func(t *testing.T) {
		var c net.Conn
		dev.do(t, func() (err error) { c, err = net.DialTimeout("tcp4", "198.51.100.1:7", 5*time.Second); return err })
		defer c.Close()
		if la := netip.MustParseAddrPort(c.LocalAddr().String()).Addr(); la != ue {
			t.Fatalf("TCP from %v, want the UE address %v", la, ue)
		}
		r := bufio.NewReader(c)
		for i := 0; i < 20; i++ {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte("hello tcp\n")); err != nil {
				t.Fatal(err)
			}
			if line, err := r.ReadString('\n'); err != nil || line != "hello tcp\n" {
				t.Fatalf("echo %d: %q %v", i, line, err)
			}
		}
	})
	mu.Lock()
	for _, a := range seen {
		if a != netip.MustParseAddr("198.51.100.254") {
			t.Errorf("server saw a packet from %v, want the NAT address 198.51.100.254", a)
		}
	}
	if len(seen) < 6 {
		t.Errorf("server saw %d flows/datagrams, want >= 6", len(seen))
	}
	mu.Unlock()

	// Downlink MTU: a 1500-octet reply does not fit the TUN (MTU 1464 =
	// 1500 - outer IPv4/UDP/GTP-U). DF clear: the node fragments it into the
	// TUN, both fragments are tunnelled, the device reassembles. DF set: the
	// node answers the server with ICMP "fragmentation needed" (mtu 1464).
	bigReply := func(port int, pmtu int) {
		srv := inet.listenUDP(t, fmt.Sprintf("198.51.100.1:%d", port))
		rc, _ := srv.SyscallConn()
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, pmtu) })
		go func() {
			buf := make([]byte, 2048)
			for {
				_, from, err := srv.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				srv.WriteToUDPAddrPort(make([]byte, 1472), from)
			}
		}()
	}
	bigReply(8, unix.IP_PMTUDISC_PROBE) // DF set, ignore the PMTU cache: always 1500 octets
	bigReply(9, unix.IP_PMTUDISC_DONT)
	t.Run("Downlink MTU/DF clear: fragmented into the TUN", func(t *testing.T) {
		var c *net.UDPConn
		dev.do(t, func() (err error) {
			c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.51.100.1:9")))
			return err
		})
		defer c.Close()
		c.Write([]byte("big please"))
		buf := make([]byte, 2048)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(buf); err != nil || n != 1472 {
			t.Fatalf("reply: %d octets, %v; want 1472", n, err)
		}
	})
	t.Run("Downlink MTU/DF set: ICMP fragmentation needed to the server", func(t *testing.T) {
		var c *net.UDPConn
		dev.do(t, func() (err error) {
			c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.51.100.1:8")))
			return err
		})
		defer c.Close()
		c.Write([]byte("big please"))
		waitFor(t, "the server to learn path MTU 1464 towards the NAT address", func() bool {
			out, _ := exec.Command("ip", "-n", inet.name, "route", "get", "198.51.100.254").CombinedOutput()
			return strings.Contains(string(out), "mtu 1464")
		})
	})

	// Uplink MTU: the internet-facing link is narrower than the packets.
	node.ip(t, "link", "set", "rdvbo-n1", "mtu", "1280")
	inet.ip(t, "link", "set", "rdvbo-i0", "mtu", "1280")
	t.Run("Uplink MTU/DF clear: fragmented", func(t *testing.T) {
		c := dfSocket(t, dev, unix.IP_PMTUDISC_DONT)
		if _, err := c.Write(make([]byte, 1372)); err != nil { // 1400-octet packet
			t.Fatal(err)
		}
		waitFor(t, "the 1372-octet datagram at the server", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(bigUDP) > 0 && bigUDP[0] == 1372
		})
	})
	t.Run("Uplink MTU/DF set: ICMP fragmentation needed to the UE", func(t *testing.T) {
		c := dfSocket(t, dev, unix.IP_PMTUDISC_PROBE) // DF set, no local PMTU check
		if _, err := c.Write(make([]byte, 1372)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "ICMP 3/4 in a G-PDU to the device", func() bool { return s.sawICMP("3/4") })
	})

	// Counters: the breakout saw exactly what the SGW side sent and got.
	waitFor(t, "counters to match the SGW side", func() bool {
		c, _ := bo.Counters(tun.LocalTEID)
		return c.PacketsUp == s.upPackets.Load() && c.PacketsDown == s.downPackets.Load()
	})
	c, _ := bo.Counters(tun.LocalTEID)
	if c.BytesUp != s.upBytes.Load() || c.BytesDown != s.downBytes.Load() || c.Dropped != 0 {
		t.Errorf("counters %+v; SGW side sent %d/%d B, received %d/%d B", c, s.upPackets.Load(), s.upBytes.Load(), s.downPackets.Load(), s.downBytes.Load())
	}
	t.Logf("counters %+v, stats %+v", c, bo.Stats())
	if c.PacketsUp < 20 || c.PacketsDown < 20 {
		t.Errorf("too little traffic: %+v", c)
	}

	// Close tears down the TUN device, its routes and the nftables table.
	if err := bo.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed = true
	if err := bo.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	h, err := netlink.NewHandleAt(node.h)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.LinkByName(nodeTUN); err == nil || !errors.As(err, new(netlink.LinkNotFoundError)) {
		t.Errorf("TUN %s still there after Close (err %v)", nodeTUN, err)
	}
	if _, err := nft.ListTableOfFamily("rdv_e2e", nftables.TableFamilyINet); err == nil {
		t.Errorf("nftables table rdv_e2e still there after Close")
	}
}

func dfSocket(t *testing.T, ns *testNS, pmtu int) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	ns.do(t, func() (err error) {
		c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.51.100.1:7")))
		return err
	})
	t.Cleanup(func() { c.Close() })
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, pmtu) })
	if serr != nil {
		t.Fatal(serr)
	}
	return c
}

// TestEndToEndIPv6: the same path with IPv6 everywhere: outer transport,
// UE pool, route and masquerade (the inet table's IPv6 rule).
func TestEndToEndIPv6(t *testing.T) {
	requireRoot(t)
	dev, node, inet := newNS(t, "dev6"), newNS(t, "node6"), newNS(t, "inet6")
	veth(t, dev, "rdvbo-d0", "fd00:99::2/64", node, "rdvbo-n0", "fd00:99::1/64")
	veth(t, node, "rdvbo-n1", "2001:db8:100::254/64", inet, "rdvbo-i0", "2001:db8:100::1/64")
	for _, x := range []struct {
		ns  *testNS
		dev string
	}{{dev, "rdvbo-d0"}, {node, "rdvbo-n0"}, {node, "rdvbo-n1"}, {inet, "rdvbo-i0"}} {
		waitFor(t, "DAD on "+x.dev, func() bool {
			out, _ := exec.Command("ip", "-n", x.ns.name, "-6", "addr", "show", "dev", x.dev, "tentative").CombinedOutput()
			return len(strings.TrimSpace(string(out))) == 0
		})
	}
	ue := netip.MustParseAddr("fd00:45::2")
	bo, err := New(Config{
		Name: "e2e6", Listen: netip.MustParseAddrPort("[fd00:99::1]:2152"), NetNS: node.path(), Workers: 1,
		TUNName: "rdvbo-gw6", Pools: []netip.Prefix{netip.MustParsePrefix("fd00:45::/64")}, NATInterface: "rdvbo-n1",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bo.Close()
	tun := Tunnel{LocalTEID: 0x6001, PeerTEID: 0x6002, Peer: netip.MustParseAddrPort("[fd00:99::2]:2152"), UE: ue}
	if err := bo.Install(tun); err != nil {
		t.Fatal(err)
	}
	s := newSGW(t, dev, "rdvbo-ue6", netip.PrefixFrom(ue, 128), tun.Peer, bo.LocalAddr(), tun.LocalTEID, tun.PeerTEID)
	dev.ip(t, "-6", "route", "add", "2001:db8:100::/64", "dev", "rdvbo-ue6")

	srv := inet.listenUDP(t, "[2001:db8:100::1]:7")
	var seen atomic.Value
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			seen.Store(from.Addr())
			srv.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	var c *net.UDPConn
	dev.do(t, func() (err error) {
		c, err = net.DialUDP("udp6", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("[2001:db8:100::1]:7")))
		return err
	})
	defer c.Close()
	buf := make([]byte, 100)
	for i := 0; i < 3; i++ {
		c.Write([]byte("hello v6"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(buf); err != nil || string(buf[:n]) != "hello v6" {
			t.Fatalf("echo %d: %q %v", i, buf[:n], err)
		}
	}
	if a, _ := seen.Load().(netip.Addr); a != netip.MustParseAddr("2001:db8:100::254") {
		t.Errorf("server saw %v, want the NAT address 2001:db8:100::254", a)
	}
	waitFor(t, "counters to match the SGW side", func() bool {
		c, _ := bo.Counters(tun.LocalTEID)
		return c.PacketsUp == s.upPackets.Load() && c.PacketsDown == s.downPackets.Load() && c.PacketsUp >= 3
	})
}
