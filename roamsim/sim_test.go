package roamsim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

func testLogger(t testing.TB) *slog.Logger {
	if t != nil && testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testDevices(t testing.TB, n int) []Device {
	t.Helper()
	k := ts1Keys(t)
	devs, err := Spread(n, DefaultCountries(), Template{IMSIPrefix: "00101", FirstIndex: 1, MSISDNPrefix: "447",
		Ki: k.Ki, OPc: k.OPc, AMF: 0x8000})
	if err != nil {
		t.Fatal(err)
	}
	return devs
}

type lab struct {
	hss *testHSS
	pgw *testPGW
	cfg Config
}

// newLab starts an HSS and a PGW on 127.0.50.<base> and .<base+1> and
// returns a Config whose SGW is .<base+2>.
func newLab(t testing.TB, base byte, devs []Device) *lab {
	t.Helper()
	pgwIP := netip.AddrFrom4([4]byte{127, 0, 50, base + 1})
	hss := startHSS(t, netip.AddrFrom4([4]byte{127, 0, 50, base}).String()+":0", pgwIP, "topon.s5.pgw1.de.node.epc.test.example")
	pgw := startPGW(t, pgwIP)
	for _, d := range devs {
		hss.add(d, 0)
	}
	sgw := netip.AddrFrom4([4]byte{127, 0, 50, base + 2})
	return &lab{hss: hss, pgw: pgw, cfg: Config{
		Devices:    devs,
		HSS:        []string{hss.addr},
		GTPC:       netip.AddrPortFrom(sgw, 0),
		PGWRegions: map[netip.Addr]topology.RegionID{pgwIP: topology.DE},
		Target:     netip.MustParseAddr("198.51.100.1"),
		T3:         300 * time.Millisecond,
		N3:         3,
		AttachRate: -1,
		Logger:     testLogger(t),
	}}
}

func runSim(t *testing.T, cfg Config, ctx context.Context) Report {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Run(ctx)
	if err != nil {
		t.Skipf("cannot run the emulator here: %v", err)
	}
	return r
}

func TestAttachOneShot(t *testing.T) {
	devs := testDevices(t, 12)
	l := newLab(t, 10, devs)
	// One device with keys the HSS does not have: the USIM must reject
	// the vector (MAC failure); one the HSS does not know: 5001.
	bad := devs[10]
	bad.Ki[0] ^= 0xff
	l.cfg.Devices[10] = bad
	l.hss.mu.Lock()
	delete(l.hss.subs, string(devs[11].IMSI))
	// One whose HSS SQN is far ahead: the USIM resyncs.
	l.hss.subs[string(devs[3].IMSI)].sqn = 1 << 40
	l.hss.mu.Unlock()
	l.pgw.mu.Lock()
	l.pgw.dropCSR = 1 // the first CSR is lost: T3/N3 must retransmit
	l.pgw.mu.Unlock()

	var (
		evMu   sync.Mutex
		events []Event
	)
	l.cfg.OnEvent = func(e Event) { evMu.Lock(); events = append(events, e); evMu.Unlock() }
	l.cfg.Concurrency = 4
	l.cfg.Probes = 2
	r := runSim(t, l.cfg, context.Background())

	byIMSI := map[topology.IMSI]DeviceReport{}
	for _, d := range r.Devices {
		byIMSI[d.IMSI] = d
	}
	for i, d := range devs[:10] {
		dr := byIMSI[d.IMSI]
		if dr.Attaches != 1 || dr.Region != topology.DE || dr.PGW != "127.0.50.11" || dr.UE == "" {
			t.Errorf("device %d %s: %+v", i, d.IMSI, dr)
			continue
		}
		if dr.Data == nil || dr.Data.Received != 2 || dr.Data.Sent != 2 {
			t.Errorf("device %d: data %+v", i, dr.Data)
		}
		if dr.State != "detached" {
			t.Errorf("device %d: state %s", i, dr.State)
		}
	}
	if f := byIMSI[bad.IMSI]; f.Attaches != 0 || len(f.Failures) != 1 || f.Failures[0].Stage != "USIM" ||
		!strings.Contains(f.Failures[0].Cause, "MAC failure") {
		t.Errorf("bad keys: %+v", f)
	}
	if f := byIMSI[devs[11].IMSI]; len(f.Failures) != 1 || f.Failures[0].Stage != "AIR" || f.Failures[0].Code != 5001 {
		t.Errorf("unknown IMSI: %+v", f)
	}
	l.hss.mu.Lock()
	resyn := l.hss.resyn
	l.hss.mu.Unlock()
	if r.Counters.Resyncs != 1 || resyn != 1 {
		t.Errorf("resyncs: sim %d, hss %d", r.Counters.Resyncs, resyn)
	}
	if r.Counters.GTPRetransmits < 1 {
		t.Errorf("no GTP retransmission after a dropped CSR")
	}
	csrs, dsrs, open := l.pgw.counts()
	if csrs != 11 || dsrs != 10 || open != 0 {
		t.Errorf("PGW saw %d CSR, %d DSR, %d sessions left", csrs, dsrs, open)
	}
	if len(r.Regions) != 2 || r.Totals.EverOK != 10 || r.Totals.Causes["USIM MAC failure"] != 1 || r.Totals.Causes["AIR 5001"] != 1 {
		t.Errorf("aggregates: %+v / %+v", r.Totals, r.Regions)
	}
	kinds := map[EventKind]int{}
	for _, e := range events {
		kinds[e.Kind]++
	}
	if kinds[EventAttached] != 10 || kinds[EventFirstData] != 10 || kinds[EventDetached] != 10 || kinds[EventAttachFailed] != 2 {
		t.Errorf("events: %v", kinds)
	}
	if _, err := json.Marshal(r); err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	if err := r.WriteTable(&sb); err != nil || !strings.Contains(sb.String(), "DE") {
		t.Errorf("table: %v\n%s", err, sb.String())
	}
	t.Logf("\n%s", sb.String())
}

func TestContinuousCLRReattach(t *testing.T) {
	devs := testDevices(t, 3)
	l := newLab(t, 20, devs)
	l.cfg.Mode = Continuous
	l.cfg.DataInterval = 50 * time.Millisecond
	l.cfg.ReattachDelay = time.Millisecond
	evc := make(chan Event, 256)
	l.cfg.OnEvent = func(e Event) {
		select {
		case evc <- e:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := New(l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		r   Report
		err error
	}
	done := make(chan result, 1)
	go func() { r, err := s.Run(ctx); done <- result{r, err} }()

	// Wait until every device passed data, then CLR device 0 with
	// Reattach-Required and device 1 without; the PGW deletes device 2's
	// bearer with "reactivation requested".
	firstData := map[topology.IMSI]int{}
	wait := func(cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case e := <-evc:
				if e.Kind == EventFirstData {
					firstData[e.IMSI]++
				}
			case res := <-done:
				t.Fatalf("Run returned early: %v", res.err)
			}
		}
	}
	wait(func() bool { return len(firstData) == 3 })
	mmeHost := "mme." + strings.ToLower(DefaultCountries()[0].Alpha2) + ".roamsim.example"
	if rc, err := l.hss.cancel(string(devs[0].IMSI), mmeHost, true); err != nil || rc != 2001 {
		t.Fatalf("CLR: CLA %d, %v", rc, err)
	}
	mmeHost1 := "mme." + strings.ToLower(DefaultCountries()[1].Alpha2) + ".roamsim.example"
	if rc, err := l.hss.cancel(string(devs[1].IMSI), mmeHost1, false); err != nil || rc != 2001 {
		t.Fatalf("CLR: CLA %d, %v", rc, err)
	}
	if !l.pgw.deleteBearer(string(devs[2].IMSI), 8) {
		t.Fatal("no PGW session for device 2")
	}
	wait(func() bool { return firstData[devs[0].IMSI] == 2 && firstData[devs[2].IMSI] == 2 })
	cancel()
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	r := res.r
	got := map[topology.IMSI]DeviceReport{}
	for _, d := range r.Devices {
		got[d.IMSI] = d
	}
	if d := got[devs[0].IMSI]; d.Attaches != 2 || d.Reattaches != 1 || d.Cancels != 1 {
		t.Errorf("device 0 (CLR reattach): %+v", d)
	}
	if d := got[devs[1].IMSI]; d.Attaches != 1 || d.Cancels != 1 || d.State != "detached" {
		t.Errorf("device 1 (CLR): %+v", d)
	}
	if d := got[devs[2].IMSI]; d.Attaches != 2 || d.Reattaches != 1 {
		t.Errorf("device 2 (DBR reactivation): %+v", d)
	}
	if r.Counters.CLR != 2 || r.Counters.DeleteBearer != 1 {
		t.Errorf("counters %+v", r.Counters)
	}
	if _, _, open := l.pgw.counts(); open != 0 {
		t.Errorf("%d PGW sessions left after Run", open)
	}
}

func TestMalformedAndSocketErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("empty config accepted")
	}
	devs := testDevices(t, 1)
	if _, err := New(Config{Devices: devs, GTPC: netip.MustParseAddrPort("127.0.50.40:0")}); err == nil {
		t.Error("4G devices without HSS accepted")
	}
	devs = append(devs, devs[0])
	if _, err := New(Config{Devices: devs, HSS: []string{"x:1"}, GTPC: netip.MustParseAddrPort("127.0.50.40:0")}); err == nil {
		t.Error("duplicate IMSI accepted")
	}
	// Garbage on the data plane and GTP-C never panics.
	var dp dataPlane
	dp.h = nopData{}
	for _, b := range [][]byte{{}, {0x30}, {0x34, 0xff, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0x85, 1}, {0x30, 0xff, 0xff, 0xff, 0, 0, 0, 1}} {
		dp.handle(b, netip.AddrPort{})
	}
	for _, b := range [][]byte{{0x48, 33, 0, 200, 0, 0, 0, 1, 0, 0, 1, 0}, {0x48, 33, 0, 8, 0, 0, 0, 1, 0, 0, 1, 0}, {0x20}} {
		safeParse2(b) // must not panic
		safeParse1(b)
	}
	// A CSResp without IEs is a device failure, not a panic.
	e := &gtpcEndpoint{}
	_ = e
}

type nopData struct{}

func (nopData) probeReply(uint32, uint16)          {}
func (nopData) errorIndication(uint32, netip.Addr) {}

var _ = errors.New

func TestContinuousPGWRestartAndMBR(t *testing.T) {
	devs := testDevices(t, 4)
	l := newLab(t, 60, devs)
	l.cfg.Mode = Continuous
	l.cfg.DataInterval = 20 * time.Millisecond
	l.cfg.EchoInterval = 20 * time.Millisecond
	l.cfg.ReattachDelay = time.Millisecond
	l.cfg.ModifyBearer = true
	evc := make(chan Event, 1024)
	l.cfg.OnEvent = func(e Event) {
		select {
		case evc <- e:
		default:
		}
	}
	s, err := New(l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan Report, 1)
	go func() { r, _ := s.Run(ctx); done <- r }()
	firstData := map[topology.IMSI]int{}
	restarted := false
	for {
		e := <-evc
		if e.Kind == EventFirstData {
			firstData[e.IMSI]++
		}
		if !restarted && len(firstData) == len(devs) {
			l.pgw.restart()
			restarted = true
		}
		all := true
		for _, d := range devs {
			all = all && firstData[d.IMSI] == 2
		}
		if all {
			break
		}
	}
	cancel()
	r := <-done
	if r.Counters.PeerRestarts < 1 || r.Counters.ModifyBearerOK != 8 {
		t.Errorf("counters %+v", r.Counters)
	}
	for _, d := range r.Devices {
		if d.Attaches != 2 || d.Reattaches != 1 {
			t.Errorf("%s: %+v", d.IMSI, d)
		}
	}
	l.pgw.mu.Lock()
	mbrs := l.pgw.mbrs
	l.pgw.mu.Unlock()
	if mbrs != 8 {
		t.Errorf("PGW saw %d MBRs, want 8", mbrs)
	}
}

func TestOneShot3G(t *testing.T) {
	devs := testDevices(t, 3)
	for i := range devs {
		devs[i].RAT = RAT3G
	}
	l := newLab(t, 70, devs)
	l.cfg.HSS = nil // the SGSN does not use S6a here
	l.cfg.GGSN = netip.AddrPortFrom(l.pgw.ip, PortGTPC)
	r := runSim(t, l.cfg, context.Background())
	for _, d := range r.Devices {
		if d.Attaches != 1 || d.Region != topology.DE || d.Data == nil || d.Data.Received != 3 || len(d.Failures) != 0 ||
			!strings.HasPrefix(d.UE, "10.46.") {
			t.Errorf("%s: %+v %+v", d.IMSI, d, d.Data)
		}
	}
	if csrs, dsrs, open := l.pgw.counts(); csrs != 3 || dsrs != 3 || open != 0 {
		t.Errorf("GGSN saw %d creates, %d deletes, %d left", csrs, dsrs, open)
	}
}

type nopGTPC struct{}

func (nopGTPC) deleteBearer(uint32, uint8)         {}
func (nopGTPC) deletePDP(uint32, bool)             {}
func (nopGTPC) peerTEID(uint32) uint32             { return 0 }
func (nopGTPC) errorIndication(uint32, netip.Addr) {}
func (nopGTPC) probeReply(uint32, uint16)          {}

// FuzzPeerInput: whatever a peer sends to the GTP-C or GTP-U socket is a
// counted error or a handled message, never a panic.
func FuzzPeerInput(f *testing.F) {
	e, err := newGTPCEndpoint(netip.MustParseAddrPort("127.0.50.90:0"), time.Millisecond, 0, 1, testLogger(nil), nopGTPC{})
	if err != nil {
		f.Skip(err)
	}
	defer e.close()
	dp, err := newDataPlane(netip.MustParseAddrPort("127.0.50.90:0"), 0, nopGTPC{})
	if err != nil {
		f.Skip(err)
	}
	defer dp.close()
	to := e.localAddr()
	for _, seed := range [][]byte{
		{0x48, 99, 0, 13, 0, 0, 0, 1, 0, 0, 1, 0, 73, 0, 1, 0, 5},                          // Delete Bearer Request
		{0x48, 33, 0, 8, 0, 0, 0, 1, 0, 0, 1, 0},                                           // empty CSResp
		{0x40, 1, 0, 4, 0, 0, 1, 0},                                                        // Echo Request
		{0x32, 20, 0, 4, 0, 0, 0, 1, 0, 1, 0, 0},                                           // v1 Delete PDP Context Request
		{0x34, 0xff, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0x85, 1, 0, 0, 0},                          // GTP-U with ext header
		{0x30, 0xff, 0, 28, 0, 0, 0, 1, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1},                 // truncated inner IPv4
		{0x32, 26, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 1, 133, 0, 4, 127, 0, 0, 1}, // Error Indication
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= 8 {
			switch b[0] >> 5 {
			case 2:
				e.handle2(append([]byte(nil), b...), to)
			case 1:
				e.handle1(append([]byte(nil), b...), to)
			}
		}
		dp.handle(b, to)
	})
}

// TestHSSFailover: the MMEs start on HSS A. A hangs (answers nothing): after
// a few request timeouts each MME drops A and moves to B, where the devices
// attach. Then B dies: the MMEs go back to A, which has recovered.
func TestHSSFailover(t *testing.T) {
	devs := testDevices(t, 3)
	l := newLab(t, 110, devs)
	b := startHSS(t, "127.0.50.113:0", l.hss.pgw, l.hss.pgwHost)
	for _, d := range devs {
		b.add(d, 0)
	}
	l.cfg.HSS = []string{l.hss.addr, b.addr}
	l.cfg.MMEPool = 1 // one MME, starting on A
	l.cfg.Mode = Continuous
	l.cfg.DiameterTimeout = 100 * time.Millisecond
	l.cfg.RetryInterval = 10 * time.Millisecond
	l.cfg.DataInterval = 20 * time.Millisecond
	l.cfg.ReattachDelay = time.Millisecond
	l.hss.pause(true)
	evc := make(chan Event, 4096)
	l.cfg.OnEvent = func(e Event) {
		select {
		case evc <- e:
		default:
		}
	}
	s, err := New(l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan Report, 1)
	go func() { r, _ := s.Run(ctx); done <- r }()
	attached := map[topology.IMSI]int{}
	waitAll := func(n int) {
		t.Helper()
		for {
			all := true
			for _, d := range devs {
				all = all && attached[d.IMSI] >= n
			}
			if all {
				return
			}
			if e := <-evc; e.Kind == EventAttached {
				attached[e.IMSI]++
			}
		}
	}
	waitAll(1) // through B
	b.mu.Lock()
	ulrsB := b.ulrs
	b.mu.Unlock()
	if ulrsB != len(devs) {
		t.Fatalf("B saw %d ULRs, want %d", ulrsB, len(devs))
	}
	// A recovers, B dies; a CLR from A makes the devices re-attach via A.
	l.hss.pause(false)
	b.kill()
	for _, d := range devs {
		for {
			if _, err := l.hss.cancel(string(d.IMSI), "mme0.pool.roamsim.example", true); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond) // the MME is still reconnecting to A
		}
	}
	waitAll(2)
	cancel()
	r := <-done
	if r.Counters.DiameterConnect < 2 {
		t.Errorf("counters %+v", r.Counters)
	}
}

// TestErrorIndicationReattach: the PGW loses a session silently; the next
// probe draws a GTP-U Error Indication and the device re-attaches.
func TestErrorIndicationReattach(t *testing.T) {
	devs := testDevices(t, 2)
	l := newLab(t, 130, devs)
	l.cfg.Mode = Continuous
	l.cfg.DataInterval = 20 * time.Millisecond
	l.cfg.ReattachDelay = time.Millisecond
	l.cfg.EchoInterval = -1
	evc := make(chan Event, 1024)
	l.cfg.OnEvent = func(e Event) {
		select {
		case evc <- e:
		default:
		}
	}
	s, err := New(l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan Report, 1)
	go func() { r, _ := s.Run(ctx); done <- r }()
	first := map[topology.IMSI]int{}
	forgot := false
	for first[devs[0].IMSI] < 2 {
		e := <-evc
		if e.Kind == EventFirstData {
			first[e.IMSI]++
		}
		if !forgot && len(first) == 2 {
			if !l.pgw.forget(string(devs[0].IMSI)) {
				t.Fatal("no session to forget")
			}
			forgot = true
		}
	}
	cancel()
	r := <-done
	if r.Counters.ErrorIndication < 1 {
		t.Errorf("counters %+v", r.Counters)
	}
	for _, d := range r.Devices {
		want := 1
		if d.IMSI == devs[0].IMSI {
			want = 2
		}
		if d.Attaches != want {
			t.Errorf("%s: %d attaches, want %d", d.IMSI, d.Attaches, want)
		}
	}
}
