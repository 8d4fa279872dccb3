package pgw_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/region/gtpc"
	"github.com/rendezvous-core/rendezvous/region/gtpc/gtpctest"
	"github.com/rendezvous-core/rendezvous/region/pgw"
	"github.com/rendezvous-core/rendezvous/region/session"
	"github.com/rendezvous-core/rendezvous/region/session/sessiontest"
	"github.com/rendezvous-core/rendezvous/topology"
)

var (
	binDir   string
	binOnce  sync.Once
	binErr   error
	binClean func()
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// peers builds go-gtp's example MME and SGW once per test binary.
func peers(t *testing.T) string {
	t.Helper()
	requireTools(t, "dumpcap", "tshark", "go")
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "rdvgtpc-bin-")
		if binErr == nil {
			binErr = gtpctest.BuildGoGTPExamples(binDir)
		}
	})
	if binErr != nil {
		skipOrFail(t, binErr.Error())
	}
	return binDir
}

func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	if miss := gtpctest.Missing(tools...); len(miss) > 0 {
		skipOrFail(t, "needs "+strings.Join(miss, ", "))
	}
}

func skipOrFail(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("RDV_REQUIRE_ALL") == "1" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// TestGoGTPExamplesAgainstPGW: go-gtp's examples/mme + examples/sgw create
// five sessions through our PGW on 127.0.0.52/.53 (both APNs), then delete
// them; the capture decodes cleanly (peers.md §3).
func TestGoGTPExamplesAgainstPGW(t *testing.T) {
	if testing.Short() {
		t.Skip("interop run takes ~40 s")
	}
	bin := peers(t)
	ns, err := gtpctest.NewNetns("pgw")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	tun := sessiontest.NewTunnels()
	subs := sessiontest.NewSubscribers()
	for i := 1; i <= 5; i++ {
		subs.Add(registry.Subscriber{IMSI: topology.IMSI(fmt.Sprintf("12345123456789%d", i)), Status: registry.StatusActive,
			APNs: []registry.APN{{Name: "some-apn-1.example"}, {Name: "some-apn-2.example"}}})
	}
	var ep *gtpc.Endpoint
	err = ns.Do(func() error {
		var err error
		ep, err = gtpc.New(gtpc.Config{StateDir: t.TempDir(), Logger: quiet(), EchoInterval: -1,
			Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.52:2123"), netip.MustParseAddrPort("127.0.0.53:2123")}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	tab, err := session.New(session.Config{NodeID: 7, Node: "lab-jp", Region: topology.JP, Tunnels: tun, Logger: quiet(),
		Pools: []session.Pool{{APN: "some-apn-1.example", Prefix: netip.MustParsePrefix("10.45.0.0/24")},
			{APN: "some-apn-2.example", Prefix: netip.MustParsePrefix("10.46.0.0/24")}}})
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	p, err := pgw.New(pgw.Config{Endpoint: ep, Sessions: tab, Subscribers: subs, Logger: quiet(),
		DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	pcap := filepath.Join(t.TempDir(), "s8.pcapng")
	capt, err := ns.StartCapture(pcap, "udp port 2123")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	var sgwOut, mmeOut bytes.Buffer
	sgw := ns.Command(ctx, t.TempDir(), filepath.Join(bin, "sgw"), "-s11", "127.0.0.112", "-s5c", "127.0.0.51",
		"-s1u", "127.0.0.2", "-s5u", "127.0.0.3")
	sgw.Stdout, sgw.Stderr = &sgwOut, &sgwOut
	if err := sgw.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sgw.Cancel(); sgw.Wait() }()
	time.Sleep(time.Second) // the MME's Dial needs the SGW's Echo answer
	mme := ns.Command(ctx, t.TempDir(), filepath.Join(bin, "mme"), "-s11mme", "127.0.0.111", "-s11sgw", "127.0.0.112",
		"-s1enb", "127.0.0.1")
	mme.Stdout, mme.Stderr = &mmeOut, &mmeOut
	if err := mme.Start(); err != nil {
		t.Fatal(err)
	}
	// The MME attaches 5 UEs, idles 30 s, deletes them and exits.
	peak := 0
	for ctx.Err() == nil {
		if n := tab.Len(); n > peak {
			peak = n
		}
		if peak == 5 && tab.Len() == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	mme.Cancel()
	mme.Wait()
	if err := capt.Stop(); err != nil {
		t.Error(err)
	}
	if peak != 5 || tab.Len() != 0 {
		t.Errorf("peak %d sessions (want 5), %d left\nMME:\n%s\nSGW:\n%s", peak, tab.Len(), mmeOut.String(), sgwOut.String())
	}
	if _, installs, removes := tun.Stats(); installs != 5 || removes != 5 {
		t.Errorf("breakout: %d installs, %d removes", installs, removes)
	}
	// The capture holds S11 (MME–SGW) too; count S8 only.
	const s8 = "(ip.addr==127.0.0.52 || ip.addr==127.0.0.53)"
	checkCapture(t, pcap, s8, map[string]int{
		"gtpv2.message_type==32":                                   5, // Create Session Request
		"gtpv2.message_type==33 && gtpv2.cause==16":                5,
		"gtpv2.message_type==36":                                   5, // Delete Session Request
		"gtpv2.message_type==37 && gtpv2.cause==16":                5,
		"gtpv2.message_type==33 && ip.src==127.0.0.53":             2, // APN 2 (even TAIs) answered from .53
		"gtpv2.message_type==33 && gtpv2.pdn_addr_and_prefix.ipv4": 5,
	})
}

func checkCapture(t *testing.T, pcap, scope string, want map[string]int) {
	t.Helper()
	bad, err := gtpctest.Problems(pcap, scope)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range bad {
		t.Errorf("tshark: %s", l)
	}
	for f, n := range want {
		got, err := gtpctest.Count(pcap, f+" && "+scope, false)
		if err != nil {
			t.Fatal(err)
		}
		if got != n {
			t.Errorf("tshark %q: %d packets, want %d", f, got, n)
		}
	}
}
