package session_test

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/breakout"
	"github.com/rendezvous-core/rendezvous/region/session"
	"github.com/rendezvous-core/rendezvous/region/session/sessiontest"
	"github.com/rendezvous-core/rendezvous/topology"
)

func newTable(t testing.TB, nodeID uint8, tun breakout.Tunnels, pools ...session.Pool) (*session.Table, *sessiontest.Anchors, *sessiontest.Usage) {
	t.Helper()
	an, us := &sessiontest.Anchors{}, &sessiontest.Usage{}
	tab, err := session.New(session.Config{NodeID: nodeID, Node: "jp-1", Region: topology.JP, Pools: pools,
		Tunnels: tun, Anchors: an, Usage: us})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tab.Close() })
	return tab, an, us
}

func params(i int, apn string) session.Params {
	return session.Params{
		Kind: session.KindPGW, IMSI: topology.IMSI(fmt.Sprintf("90170%010d", i)), Bearer: 5, APN: apn,
		PeerC:     netip.MustParseAddrPort("127.0.20.2:2123"),
		PeerU:     netip.MustParseAddrPort("127.0.20.2:2152"),
		PeerTEIDC: breakout.TEID(1000 + i), PeerTEIDU: breakout.TEID(2000 + i),
	}
}

func TestCreateLookupRemove(t *testing.T) {
	tun := sessiontest.NewTunnels()
	tab, an, us := newTable(t, 0xab, tun, session.Pool{APN: "internet", Prefix: netip.MustParsePrefix("10.45.0.0/24")})
	s, err := tab.Create(params(1, "Internet.mnc001.mcc901.gprs"))
	if err != nil {
		t.Fatal(err)
	}
	if s.TEID>>24 != 0xab || s.TEID&0xffffff == 0 {
		t.Errorf("TEID %#08x: want node id 0xab in the top 8 bits", uint32(s.TEID))
	}
	if s.APN != "internet" || !netip.MustParsePrefix("10.45.0.0/24").Contains(s.UE) || s.UE == netip.MustParseAddr("10.45.0.1") {
		t.Errorf("session %+v: bad APN or UE address", s)
	}
	if got, ok := tab.ByTEID(s.TEID); !ok || got != s {
		t.Errorf("ByTEID = %+v, %v", got, ok)
	}
	if got, ok := tab.ByBearer(session.KindPGW, s.IMSI, 5); !ok || got.TEID != s.TEID {
		t.Errorf("ByBearer = %+v, %v", got, ok)
	}
	if _, ok := tab.ByBearer(session.KindGGSN, s.IMSI, 5); ok {
		t.Error("ByBearer found a GGSN context for a PGW session")
	}
	if got, ok := tab.ByUE(s.UE); !ok || got.TEID != s.TEID {
		t.Errorf("ByUE = %+v, %v", got, ok)
	}
	tn, ok := tun.Get(s.TEID)
	if !ok || tn.PeerTEID != 2001 || tn.UE != s.UE || tn.Peer != netip.MustParseAddrPort("127.0.20.2:2152") {
		t.Errorf("breakout tunnel %+v, %v", tn, ok)
	}
	// Modify Bearer: new SGW user plane → re-install.
	ns, err := tab.UpdatePeer(s.TEID, session.Update{PeerU: netip.MustParseAddrPort("127.0.20.3:2152"), PeerTEIDU: 77})
	if err != nil || ns.PeerTEIDU != 77 {
		t.Fatal(ns, err)
	}
	if tn, _ := tun.Get(s.TEID); tn.PeerTEID != 77 || tn.Peer.Addr() != netip.MustParseAddr("127.0.20.3") {
		t.Errorf("after UpdatePeer the breakout has %+v", tn)
	}
	if _, err := tab.Remove(s.TEID); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.Remove(s.TEID); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("second Remove: %v, want ErrNotFound", err)
	}
	if n, _, _ := tun.Stats(); n != 0 || tab.Len() != 0 {
		t.Errorf("after Remove: %d tunnels, %d sessions", n, tab.Len())
	}
	if _, ok := tab.ByUE(s.UE); ok {
		t.Error("UE address still mapped")
	}
	tab.Close()
	if an.Len() != 2 || us.Len() != 1 || us.Records[0].BytesUp != 100 {
		t.Errorf("anchors %d (want start+end), usage %+v", an.Len(), us.Records)
	}
	if !an.Anchors[1].Ended.After(an.Anchors[0].Started.Add(-time.Second)) || an.Anchors[0].ID != an.Anchors[1].ID {
		t.Errorf("anchors %+v", an.Anchors)
	}
}

func TestPoolExhaustionAndReuse(t *testing.T) {
	tab, _, _ := newTable(t, 1, sessiontest.NewTunnels(), session.Pool{APN: "iot", Prefix: netip.MustParsePrefix("10.0.0.0/29")})
	// /29: 8 addresses minus network, gateway and broadcast = 5.
	var made []session.Session
	for i := range 5 {
		s, err := tab.Create(params(i, "iot"))
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		made = append(made, s)
	}
	if _, err := tab.Create(params(9, "iot")); !errors.Is(err, session.ErrPoolExhausted) {
		t.Fatalf("6th create: %v, want ErrPoolExhausted", err)
	}
	if _, err := tab.Create(params(9, "other")); !errors.Is(err, session.ErrNoPool) {
		t.Fatalf("unknown APN: %v, want ErrNoPool", err)
	}
	if _, err := tab.Remove(made[2].TEID); err != nil {
		t.Fatal(err)
	}
	s, err := tab.Create(params(9, "iot"))
	if err != nil || s.UE != made[2].UE {
		t.Fatalf("after a release: %+v %v, want address %v", s, err, made[2].UE)
	}
}

func TestReplaceSameBearer(t *testing.T) {
	tun := sessiontest.NewTunnels()
	tab, _, _ := newTable(t, 1, tun, session.Pool{APN: "*", Prefix: netip.MustParsePrefix("10.0.0.0/24")})
	a, err := tab.Create(params(1, "any"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := tab.Create(params(1, "any"))
	if err != nil {
		t.Fatal(err)
	}
	if a.TEID == b.TEID || tab.Len() != 1 {
		t.Fatalf("replace: %d sessions, TEIDs %x %x", tab.Len(), a.TEID, b.TEID)
	}
	if _, ok := tun.Get(a.TEID); ok {
		t.Error("old tunnel still installed")
	}
}

func TestBreakoutFailureFreesAddress(t *testing.T) {
	tun := sessiontest.NewTunnels()
	tun.Fail = errors.New("boom")
	tab, _, _ := newTable(t, 1, tun, session.Pool{APN: "iot", Prefix: netip.MustParsePrefix("10.0.0.0/30")})
	for range 3 { // /30 has one usable address: must not leak it
		if _, err := tab.Create(params(1, "iot")); err == nil || errors.Is(err, session.ErrPoolExhausted) {
			t.Fatalf("create with failing breakout: %v", err)
		}
	}
	tun.Fail = nil
	if _, err := tab.Create(params(1, "iot")); err != nil {
		t.Fatal(err)
	}
}

// TestMemoryPerSession measures the table's heap per session at 100,000
// sessions, the breakout excluded (Discard keeps nothing). Target ≤ 1 KiB.
func TestMemoryPerSession(t *testing.T) {
	const n = 100_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tab, err := session.New(session.Config{NodeID: 3, Node: "jp-1", Region: topology.JP, Tunnels: sessiontest.Discard{},
		Pools: []session.Pool{{APN: "internet", Prefix: netip.MustParsePrefix("10.128.0.0/14")}}})
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	for i := range n {
		if _, err := tab.Create(params(i, "internet")); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%d sessions: %.0f bytes/session (heap, pools included, breakout excluded)", tab.Len(), per)
	if per > 1024 {
		t.Errorf("%.0f bytes/session, target ≤ 1024", per)
	}
	runtime.KeepAlive(tab)
}

func BenchmarkCreateRemove(b *testing.B) {
	tab, err := session.New(session.Config{NodeID: 3, Node: "jp-1", Region: topology.JP, Tunnels: sessiontest.Discard{},
		Pools: []session.Pool{{APN: "internet", Prefix: netip.MustParsePrefix("10.128.0.0/14")}}})
	if err != nil {
		b.Fatal(err)
	}
	defer tab.Close()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s, err := tab.Create(params(i, "internet"))
		if err != nil {
			b.Fatal(err)
		}
		tab.Remove(s.TEID)
	}
}

func TestInterimUsage(t *testing.T) {
	tun := sessiontest.NewTunnels()
	us := &sessiontest.Usage{}
	tab, err := session.New(session.Config{NodeID: 1, Node: "jp-1", Region: topology.JP, Tunnels: tun, Usage: us,
		UsageInterval: 5 * time.Millisecond,
		Pools:         []session.Pool{{APN: "iot", Prefix: netip.MustParsePrefix("10.0.0.0/24")}}})
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	s, err := tab.Create(params(1, "iot"))
	if err != nil {
		t.Fatal(err)
	}
	wait := func(n int) {
		for us.Len() < n {
			time.Sleep(time.Millisecond)
		}
	}
	tun.SetCounters(s.TEID, breakout.Counters{BytesUp: 1000, BytesDown: 2000})
	wait(1)
	tun.SetCounters(s.TEID, breakout.Counters{BytesUp: 1500, BytesDown: 2600})
	wait(2)
	tun.SetCounters(s.TEID, breakout.Counters{BytesUp: 1700, BytesDown: 2600})
	if _, err := tab.Remove(s.TEID); err != nil {
		t.Fatal(err)
	}
	tab.Close()
	type rec struct {
		seq      int64
		up, down uint64
	}
	var got []rec
	for _, r := range us.Records {
		got = append(got, rec{r.Sequence, r.BytesUp, r.BytesDown})
	}
	// The last interim record may or may not have seen 1700 before the
	// removal; either way the deltas add up and the sequence is 1, 2, 3….
	var up, down uint64
	for i, r := range got {
		if r.seq != int64(i+1) {
			t.Errorf("records %v: sequence not 1, 2, 3…", got)
		}
		up += r.up
		down += r.down
	}
	if up != 1700 || down != 2600 || len(got) < 3 {
		t.Errorf("records %v: totals %d/%d, want 1700/2600 in ≥ 3 records", got, up, down)
	}
	for i := 1; i < len(us.Records); i++ {
		if !us.Records[i].From.Equal(us.Records[i-1].To) {
			t.Errorf("record %d starts at %v, previous ended at %v", i, us.Records[i].From, us.Records[i-1].To)
		}
	}
}
