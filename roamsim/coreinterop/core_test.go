// Package coreinterop_test runs roamsim against the core's own S6a HSS
// (region/hss on an embedded registry) and S5/S8 PGW-C (region/pgw on
// region/gtpc): the visited network and the core, written independently,
// must agree on the wire. It is a test-only package so that roamsim itself
// never imports region/ (arch_test.go) and so that churn in the core's
// constructors cannot break roamsim's own tests.
package coreinterop_test

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/region/gtpc"
	"github.com/rendezvous-core/rendezvous/region/hss"
	"github.com/rendezvous-core/rendezvous/region/pgw"
	"github.com/rendezvous-core/rendezvous/region/session"
	"github.com/rendezvous-core/rendezvous/region/session/sessiontest"
	"github.com/rendezvous-core/rendezvous/roamsim"
	"github.com/rendezvous-core/rendezvous/topology"
)

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("RDV_REQUIRE_ALL") == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// TestRoamsimAgainstCore: devices from every continent authenticate against
// the real HSS (the USIM verifies its vectors: MAC, SQN per IND, KASME with
// the visited PLMN), are steered to their nearest region's PGW named in the
// ULA, create a session at the real PGW-C, send a Modify Bearer and detach.
// All four regions' PGWs are the one PGW here, told apart by the
// MIP-Home-Agent-Host the HSS names.
func TestRoamsimAgainstCore(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pgwC := netip.MustParseAddrPort("127.0.50.81:2123")

	k := [16]byte{0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f, 0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc}
	opc := [16]byte{0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e, 0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf}
	countries, err := roamsim.SelectCountries(roamsim.DefaultCountries(), []string{"JP", "DE", "US", "BR", "ZA", "AU", "IN", "GB"})
	if err != nil {
		t.Fatal(err)
	}
	devs, err := roamsim.Spread(len(countries), countries, roamsim.Template{IMSIPrefix: "00101", FirstIndex: 1,
		MSISDNPrefix: "4470", Ki: k, OPc: opc, AMF: 0x8000, APN: "iot.example"})
	if err != nil {
		t.Fatal(err)
	}

	store, err := registry.Open(ctx, registry.Config{DSN: "sqlite:" + t.TempDir() + "/registry.db",
		KEK: make([]byte, 32), KEKID: "test", Region: topology.DE, Logger: quiet})
	if err != nil {
		skipOrFail(t, "embedded registry: %v", err)
	}
	defer store.Close()
	subs := sessiontest.NewSubscribers()
	for _, d := range devs {
		sub := registry.Subscriber{IMSI: d.IMSI, MSISDN: d.MSISDN, Status: registry.StatusActive, HomeRegion: topology.DE,
			APNs: []registry.APN{{Name: "iot.example"}}}
		if err := store.Provision(ctx, sub, registry.AuthData{Ki: d.Ki, OPc: d.OPc, AMF: [2]byte{0x80, 0}}); err != nil {
			t.Fatalf("provision %s: %v", d.IMSI, err)
		}
		subs.Add(sub)
	}

	pgws := map[topology.RegionID]hss.PGW{}
	for _, r := range []topology.RegionID{topology.JP, topology.US, topology.DE, topology.AU} {
		pgws[r] = hss.PGW{Host: "topon.s5.pgw1." + strings.ToLower(string(r)) + ".node.epc.test.example", Addr: pgwC.Addr()}
	}
	h, err := hss.New(hss.Config{OriginHost: "hss.de.test.example", OriginRealm: "test.example",
		Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.50.80:0")}, Region: topology.DE,
		Peers: hss.LabPeers(), Subscribers: store, Steering: hss.NearestSteerer{}, PGWs: pgws, Logger: quiet})
	if err != nil {
		skipOrFail(t, "region/hss: %v", err)
	}
	defer h.Close()

	ep, err := gtpc.New(gtpc.Config{StateDir: t.TempDir(), Logger: quiet, EchoInterval: -1, Addrs: []netip.AddrPort{pgwC}})
	if err != nil {
		skipOrFail(t, "region/gtpc endpoint on %v: %v", pgwC, err)
	}
	defer ep.Close()
	tab, err := session.New(session.Config{NodeID: 7, Node: "lab-de", Region: topology.DE, Tunnels: sessiontest.NewTunnels(),
		Logger: quiet, Pools: []session.Pool{{APN: "iot.example", Prefix: netip.MustParsePrefix("10.47.0.0/24")}}})
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	p, err := pgw.New(pgw.Config{Endpoint: ep, Sessions: tab, Subscribers: subs, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	sim, err := roamsim.New(roamsim.Config{
		Devices:         devs,
		HSS:             []string{h.Addrs()[0].String()},
		GTPC:            netip.MustParseAddrPort("127.0.50.82:0"),
		ModifyBearer:    true,
		AttachRate:      -1,
		DiameterTimeout: 10 * time.Second,
		Logger:          quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := sim.Run(ctx)
	if err != nil {
		skipOrFail(t, "roamsim: %v", err)
	}
	for _, d := range r.Devices {
		rank, err := topology.Rank(topology.MCC(d.Visited[:3]))
		if err != nil {
			t.Fatal(err)
		}
		ue, uerr := netip.ParseAddr(d.UE)
		if d.Attaches != 1 || len(d.Failures) != 0 || uerr != nil || !netip.MustParsePrefix("10.47.0.0/24").Contains(ue) {
			t.Errorf("%s (%s): %+v", d.IMSI, d.Country, d)
			continue
		}
		if d.Region != rank[0].Region {
			t.Errorf("%s visiting %s served by %s, nearest is %s", d.IMSI, d.Country, d.Region, rank[0].Region)
		}
	}
	if r.Counters.ModifyBearerOK != uint64(len(devs)) || r.Counters.Detached != uint64(len(devs)) {
		t.Errorf("counters %+v", r.Counters)
	}
}
