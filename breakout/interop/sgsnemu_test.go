package interop_test

// This interop test wires the real control plane (region/gtpc, region/ggsn,
// region/session) to the breakout; the breakout package itself never
// imports region/ (DESIGN.md §3). It may move to e2e/ as is.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/breakout"
	"github.com/rendezvous-core/rendezvous/region/ggsn"
	"github.com/rendezvous-core/rendezvous/region/gtpc"
	"github.com/rendezvous-core/rendezvous/region/gtpc/gtpctest"
	"github.com/rendezvous-core/rendezvous/region/session"
	"github.com/rendezvous-core/rendezvous/region/session/sessiontest"
	"github.com/rendezvous-core/rendezvous/topology"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

func need(t *testing.T, tools ...string) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root"
	} else if miss := gtpctest.Missing(tools...); len(miss) > 0 {
		why = "needs " + strings.Join(miss, ", ")
	}
	if why == "" {
		return
	}
	if os.Getenv("RDV_REQUIRE_ALL") == "1" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// mkNS creates rdvbo-<tag>-<pid> with lo up; cleanup deletes it.
func mkNS(t *testing.T, tag string) *gtpctest.Netns {
	t.Helper()
	name := fmt.Sprintf("rdvbo-%s-%d", tag, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	n := &gtpctest.Netns{Name: name}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	ipn(t, n, "link", "set", "lo", "up")
	return n
}

func ipn(t *testing.T, n *gtpctest.Netns, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", n.Name, strings.Join(args, " "), err, out)
	}
}

// TestSgsnemuThroughGGSNAndBreakout: osmo-ggsn's sgsnemu (an independent
// SGSN) creates a PDP context at our GGSN, which installs the tunnel in our
// breakout; sgsnemu's own tun device in a "ue" namespace pings a host in an
// "internet" namespace through GTP-U, the breakout, its TUN and source NAT;
// the replies come back. On SIGTERM sgsnemu deletes the context and the
// tunnel leaves the breakout with its counters. tshark checks the wire.
func TestSgsnemuThroughGGSNAndBreakout(t *testing.T) {
	if testing.Short() {
		t.Skip("interop run takes ~30 s")
	}
	need(t, "ip", "sgsnemu", "dumpcap", "tshark")
	node, inet, ue := mkNS(t, "gn"), mkNS(t, "inet"), mkNS(t, "ue")
	if out, err := exec.Command("ip", "link", "add", "rdvbo-n1", "netns", node.Name, "type", "veth", "peer", "name", "rdvbo-i0", "netns", inet.Name).CombinedOutput(); err != nil {
		t.Fatalf("veth: %v: %s", err, out)
	}
	ipn(t, node, "addr", "add", "198.51.100.254/24", "dev", "rdvbo-n1")
	ipn(t, inet, "addr", "add", "198.51.100.1/24", "dev", "rdvbo-i0")
	ipn(t, node, "link", "set", "rdvbo-n1", "up")
	ipn(t, inet, "link", "set", "rdvbo-i0", "up")

	quiet := slog.New(slog.DiscardHandler)
	bo, err := breakout.New(breakout.Config{
		Name: "gn", Listen: netip.MustParseAddrPort("127.0.0.2:2152"), NetNS: "/var/run/netns/" + node.Name,
		Workers: 1, TUNName: "rdvbo-gn0", Pools: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/16")},
		NATInterface: "rdvbo-n1", Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bo.Close()

	pcap := filepath.Join(t.TempDir(), "gn.pcapng")
	capt, err := node.StartCapture(pcap, "udp port 2123 or udp port 2152")
	if err != nil {
		t.Fatal(err)
	}
	var ep *gtpc.Endpoint
	if err := node.Do(func() (err error) {
		ep, err = gtpc.New(gtpc.Config{StateDir: t.TempDir(), Logger: quiet, EchoInterval: -1,
			Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:2123")}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	tab, err := session.New(session.Config{NodeID: 7, Node: "lab-de", Region: topology.DE, Tunnels: bo, Logger: quiet,
		Pools: []session.Pool{{APN: "internet", Prefix: netip.MustParsePrefix("198.18.0.0/16")}}})
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	subs := sessiontest.NewSubscribers()
	subs.AddRange(901700000000001, 1, 10, "internet")
	g, err := ggsn.New(ggsn.Config{Endpoint: ep, Sessions: tab, Subscribers: subs, Logger: quiet,
		UserPlane: netip.MustParseAddr("127.0.0.2"), DNS: []netip.Addr{netip.MustParseAddr("198.51.100.53")}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()

	var out bytes.Buffer
	sg := node.Command(context.Background(), t.TempDir(), "stdbuf", "-oL", "sgsnemu", "-l", "127.0.0.1", "-r", "127.0.0.2",
		"--createif", "--netns", ue.Name, "--tun-device", "sgsntun", "--defaultroute", "--contexts", "1",
		"--apn", "internet", "--imsi", "901700000000001", "--msisdn", "46700000001")
	sg.Stdout, sg.Stderr = &out, &out
	if err := sg.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			sg.Process.Kill()
			sg.Wait()
		}
	}()

	// sgsnemu configures the UE address from the End User Address.
	var ueAddr netip.Addr
	waitUntil(t, "sgsntun to get the UE address", 30*time.Second, func() bool {
		o, _ := exec.Command("ip", "-n", ue.Name, "-4", "-o", "addr", "show", "dev", "sgsntun").Output()
		f := strings.Fields(string(o))
		for i, w := range f {
			if w == "inet" && i+1 < len(f) {
				ueAddr = netip.MustParsePrefix(f[i+1]).Addr()
				return true
			}
		}
		return false
	})
	var tunnel breakout.Tunnel
	bo.Range(func(tn breakout.Tunnel, _ breakout.Counters) bool { tunnel = tn; return false })
	if tunnel.UE != ueAddr || tunnel.Peer.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("breakout has tunnel %+v, sgsnemu's UE address is %v", tunnel, ueAddr)
	}

	// Ping through sgsnemu's tun, GTP-U, the breakout and NAT.
	var c net.PacketConn
	if err := ue.Do(func() (err error) { c, err = net.ListenPacket("ip4:icmp", ueAddr.String()); return err }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const pings = 5
	buf := make([]byte, 1500)
	for seq := 1; seq <= pings; seq++ {
		req, _ := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 0x5151, Seq: seq, Data: []byte("via sgsnemu")}}).Marshal(nil)
		if _, err := c.WriteTo(req, &net.IPAddr{IP: net.IPv4(198, 51, 100, 1)}); err != nil {
			t.Fatal(err)
		}
		for {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				t.Fatalf("echo reply %d: %v\nsgsnemu:\n%s", seq, err, out.String())
			}
			if m, err := icmp.ParseMessage(1, buf[:n]); err == nil && m.Type == ipv4.ICMPTypeEchoReply {
				if e, ok := m.Body.(*icmp.Echo); ok && e.Seq == seq {
					break
				}
			}
		}
	}
	cs, _ := bo.Counters(tunnel.LocalTEID)
	if cs.PacketsUp < pings || cs.PacketsDown < pings || cs.Dropped != 0 {
		t.Errorf("counters %+v after %d pings", cs, pings)
	}
	t.Logf("tunnel %+v counters %+v", tunnel, cs)

	// SIGTERM: sgsnemu deletes its context; our GGSN removes the tunnel.
	sg.Process.Signal(syscall.SIGTERM)
	waitUntil(t, "the tunnel to be removed", 60*time.Second, func() bool { return bo.Len() == 0 })
	sg.Wait()
	stopped = true
	if err := capt.Stop(); err != nil {
		t.Error(err)
	}
	bad, err := gtpctest.Problems(pcap, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range bad {
		t.Errorf("tshark: %s", l)
	}
	for f, atLeast := range map[string]int{
		"gtp.message==0xff && ip.dst==127.0.0.2": pings, // G-PDUs to the breakout
		"gtp.message==0xff && ip.src==127.0.0.2": pings, // G-PDUs from it
	} {
		if n, err := gtpctest.Count(pcap, f, false); err != nil || n < atLeast {
			t.Errorf("tshark %q: %d packets (%v), want >= %d", f, n, err, atLeast)
		}
	}
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
