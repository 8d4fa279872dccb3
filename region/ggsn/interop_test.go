package ggsn_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/region/ggsn"
	"github.com/rendezvous-core/rendezvous/region/gtpc"
	"github.com/rendezvous-core/rendezvous/region/gtpc/gtpctest"
	"github.com/rendezvous-core/rendezvous/region/session"
	"github.com/rendezvous-core/rendezvous/region/session/sessiontest"
	"github.com/rendezvous-core/rendezvous/topology"
)

func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	if miss := gtpctest.Missing(tools...); len(miss) > 0 {
		why := "needs " + strings.Join(miss, ", ")
		if os.Getenv("RDV_REQUIRE_ALL") == "1" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
}

// node is our GGSN inside a namespace.
type node struct {
	ep  *gtpc.Endpoint
	tab *session.Table
	g   *ggsn.GGSN
	tun *sessiontest.Tunnels
}

func startNode(t testing.TB, ns *gtpctest.Netns, addr, stateDir string, subs *sessiontest.Subscribers) *node {
	t.Helper()
	n := &node{tun: sessiontest.NewTunnels()}
	err := ns.Do(func() error {
		var err error
		n.ep, err = gtpc.New(gtpc.Config{StateDir: stateDir, Logger: quiet(), EchoInterval: -1,
			Addrs: []netip.AddrPort{netip.MustParseAddrPort(addr)}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	n.tab, err = session.New(session.Config{NodeID: 9, Node: "lab-de", Region: topology.DE, Tunnels: n.tun, Logger: quiet(),
		Pools: []session.Pool{{APN: "internet", Prefix: netip.MustParsePrefix("198.18.0.0/16")}}})
	if err != nil {
		t.Fatal(err)
	}
	n.g, err = ggsn.New(ggsn.Config{Endpoint: n.ep, Sessions: n.tab, Subscribers: subs, Logger: quiet(),
		DNS: []netip.Addr{netip.MustParseAddr("198.51.100.53")}})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *node) close() {
	n.g.Close()
	n.ep.Close()
	n.tab.Close()
}

// runSgsnemu runs one sgsnemu (peers.md §2.3) and returns its output.
func runSgsnemu(t testing.TB, ns *gtpctest.Netns, dir, local, remote string, contexts int, imsi string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := ns.Command(ctx, dir, "sgsnemu", "-l", local, "-r", remote, "--contexts", fmt.Sprint(contexts),
		"--timelimit", "1", "--apn", "internet", "--imsi", imsi, "--msisdn", "46700000001")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil && ctx.Err() != nil {
		t.Fatalf("sgsnemu: %v\n%s", err, out.String())
	}
	return out.String()
}

// TestSgsnemuAgainstGGSN: osmo-ggsn's sgsnemu creates and deletes PDP
// contexts at our GGSN; then our node restarts and a second sgsnemu sees
// the new Recovery in our Echo Response. tshark checks the capture.
func TestSgsnemuAgainstGGSN(t *testing.T) {
	if testing.Short() {
		t.Skip("interop run takes ~30 s")
	}
	requireTools(t, "sgsnemu", "dumpcap", "tshark")
	ns, err := gtpctest.NewNetns("ggsn")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	subs := sessiontest.NewSubscribers()
	subs.AddRange(901700000000001, 10, 10, "internet") // sgsnemu: context n has IMSI + 10·n
	state := t.TempDir()
	pcap := filepath.Join(t.TempDir(), "gp.pcapng")
	capt, err := ns.StartCapture(pcap, "udp port 2123 or udp port 2152")
	if err != nil {
		t.Fatal(err)
	}
	sg := t.TempDir() // reused: sgsnemu keeps its restart counter there

	n := startNode(t, ns, "127.0.0.2:2123", state, subs)
	rc1 := n.ep.RestartCounter()
	out := runSgsnemu(t, ns, sg, "127.0.0.1", "127.0.0.2", 5, "901700000000001")
	created := strings.Count(out, "Received create PDP context response")
	deleted := strings.Count(out, "Received delete PDP context response")
	if created != 5 || deleted != 5 {
		t.Errorf("sgsnemu: %d created, %d deleted (want 5, 5)\n%s", created, deleted, out)
	}
	if _, installs, removes := n.tun.Stats(); installs != 5 || removes != 5 || n.tab.Len() != 0 {
		t.Errorf("breakout %d installs %d removes, %d contexts left", installs, removes, n.tab.Len())
	}
	n.close()

	// Restart our node: same state dir, new Recovery.
	n = startNode(t, ns, "127.0.0.2:2123", state, subs)
	defer n.close()
	rc2 := n.ep.RestartCounter()
	if rc2 != rc1+1 {
		t.Errorf("restart counter %d after %d", rc2, rc1)
	}
	// Echo only (--contexts 0, peers.md §2.6): the peer reads our Recovery.
	out = runSgsnemu(t, ns, sg, "127.0.0.1", "127.0.0.2", 0, "901700000000001")
	if !strings.Contains(out, "Received echo response") {
		t.Errorf("second sgsnemu got no Echo Response\n%s", out)
	}
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
	for f, want := range map[string]int{
		"gtp.message==0x10": 5, "gtp.message==0x11 && gtp.cause==128": 5,
		"gtp.message==0x14": 5, "gtp.message==0x15 && gtp.cause==128": 5,
		"gtp.message==0x11 && gtp.user_ipv4": 5,
	} {
		if got, err := gtpctest.Count(pcap, f, false); err != nil || got != want {
			t.Errorf("tshark %q: %d packets (%v), want %d", f, got, err, want)
		}
	}
	// The peer sees our restart: the Recovery in our Echo Responses.
	rcs, err := gtpctest.Tshark(pcap, "-Y", "gtp.message==2 && ip.src==127.0.0.2", "-T", "fields", "-e", "gtp.recovery")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{fmt.Sprint(rc1), fmt.Sprint(rc2)}; fmt.Sprint(rcs) != fmt.Sprint(want) {
		t.Errorf("Recovery in our Echo Responses on the wire: %v, want %v", rcs, want)
	}
}
