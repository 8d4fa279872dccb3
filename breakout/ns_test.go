package breakout

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"github.com/wmnsk/go-gtp/gtpv1/message"
)

// skipOrFail skips a test whose prerequisites are missing, or fails it when
// RDV_REQUIRE_ALL=1.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("RDV_REQUIRE_ALL") == "1" {
		t.Fatalf("RDV_REQUIRE_ALL=1: "+format, args...)
	}
	t.Skipf(format, args...)
}

func requireRoot(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root: network namespaces, TUN devices, nftables")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "needs %s in PATH", tool)
		}
	}
}

var nsSeq atomic.Int32

// testNS is a network namespace the test created; cleanup deletes it.
type testNS struct {
	name string
	h    netns.NsHandle
}

func newNS(t testing.TB, tag string) *testNS {
	t.Helper()
	name := fmt.Sprintf("rdvbo-%s-%d-%d", tag, os.Getpid(), nsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	n := &testNS{name: name}
	t.Cleanup(func() {
		if n.h.IsOpen() {
			n.h.Close()
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	n.h = h
	n.ip(t, "link", "set", "lo", "up")
	return n
}

func (n *testNS) path() string { return "/var/run/netns/" + n.name }

func (n *testNS) ip(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", n.name}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", n.name, strings.Join(args, " "), err, out)
	}
}

func (n *testNS) exec(args ...string) ([]byte, error) {
	return exec.Command("ip", append([]string{"netns", "exec", n.name}, args...)...).CombinedOutput()
}

// do runs f on a thread inside the namespace (sockets it opens stay there).
func (n *testNS) do(t testing.TB, f func() error) {
	t.Helper()
	if err := inNetNS(n.h, f); err != nil {
		t.Fatal(err)
	}
}

func (n *testNS) listenUDP(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	n.do(t, func() error {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// veth links a and b with a veth pair, addresses given as prefixes.
func veth(t testing.TB, a *testNS, aName, aAddr string, b *testNS, bName, bAddr string) {
	t.Helper()
	if out, err := exec.Command("ip", "link", "add", aName, "netns", a.name, "type", "veth", "peer", "name", bName, "netns", b.name).CombinedOutput(); err != nil {
		t.Fatalf("ip link add veth: %v: %s", err, out)
	}
	a.ip(t, "addr", "add", aAddr, "dev", aName)
	b.ip(t, "addr", "add", bAddr, "dev", bName)
	a.ip(t, "link", "set", aName, "up")
	b.ip(t, "link", "set", bName, "up")
}

// waitFor polls cond until it holds or a generous deadline passes; it
// asserts on the condition, never on how long it took.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sgw is the test's device/SGW side: a TUN device carrying the UE address
// in the device namespace, and a GTP-U encapsulator built on go-gtp's codec
// (an implementation independent of ours) that tunnels the UE's IPv4
// packets to the breakout and decapsulates what comes back.
type sgw struct {
	conn      *net.UDPConn
	tun       *tunEgress
	breakout  netip.AddrPort
	ue        netip.Addr
	localTEID TEID // the breakout's TEID (uplink)
	peerTEID  TEID // ours (downlink)

	upPackets, upBytes     atomic.Uint64
	downPackets, downBytes atomic.Uint64
	mu                     sync.Mutex // guards following fields
	icmp                   []string   // "type/code" of downlink ICMP packets
	signalling             []message.Message
	wg                     sync.WaitGroup
}

func newSGW(t testing.TB, ns *testNS, tunName string, ue netip.Prefix, listen, breakout netip.AddrPort, local, peer TEID) *sgw {
	t.Helper()
	s := &sgw{breakout: breakout, localTEID: local, peerTEID: peer, ue: ue.Addr()}
	s.conn = ns.listenUDP(t, listen.String())
	ns.do(t, func() error {
		cfg := Config{Name: "sgw", TUNName: tunName, MTU: 1500, TUNAddr: ue, NoNAT: true}
		if ue.Addr().Is6() {
			cfg.Pools = []netip.Prefix{ue} // keeps IPv6 enabled on the device
		}
		var err error
		s.tun, err = openTUN(&cfg, 1, netns.None())
		return err
	})
	s.wg.Add(2)
	go s.uplink()
	go s.downlink()
	t.Cleanup(func() {
		s.conn.Close()
		s.tun.Close()
		s.wg.Wait()
	})
	return s
}

func (s *sgw) uplink() {
	defer s.wg.Done()
	q := s.tun.Queue(0)
	bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
	seq := uint16(0)
	for {
		if _, err := q.ReadPackets(bufs, sizes); err != nil {
			return
		}
		p := bufs[0][:sizes[0]]
		// Only the UE's own packets: the device kernel's link-local
		// IPv6 chatter (router solicitations, MLD) is not bearer traffic.
		if src, _, ok := innerAddrs(p); !ok || src != s.ue {
			continue
		}
		seq++
		b, err := message.NewTPDUWithSequence(uint32(s.localTEID), seq, p).Marshal()
		if err != nil {
			continue
		}
		if _, err := s.conn.WriteToUDPAddrPort(b, s.breakout); err == nil {
			s.upPackets.Add(1)
			s.upBytes.Add(uint64(len(p)))
		}
	}
}

func (s *sgw) downlink() {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	q := s.tun.Queue(0)
	for {
		n, _, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		m, err := message.Parse(buf[:n])
		if err != nil {
			continue
		}
		tp, ok := m.(*message.TPDU)
		if !ok || TEID(tp.TEID()) != s.peerTEID {
			s.mu.Lock()
			s.signalling = append(s.signalling, m)
			s.mu.Unlock()
			continue
		}
		p := tp.Decapsulate()
		s.downPackets.Add(1)
		s.downBytes.Add(uint64(len(p)))
		if len(p) >= 22 && p[0]>>4 == 4 && p[9] == 1 {
			ihl := int(p[0]&0xf) * 4
			if len(p) >= ihl+2 {
				s.mu.Lock()
				s.icmp = append(s.icmp, fmt.Sprintf("%d/%d", p[ihl], p[ihl+1]))
				s.mu.Unlock()
			}
		}
		_ = q.WritePacket(p)
	}
}

func (s *sgw) sawICMP(typeCode string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.icmp {
		if c == typeCode {
			return true
		}
	}
	return false
}
