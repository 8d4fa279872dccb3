package hss

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fiorix/go-diameter/v4/diam"
	"github.com/fiorix/go-diameter/v4/diam/avp"
	"github.com/fiorix/go-diameter/v4/diam/datatype"
	"github.com/fiorix/go-diameter/v4/diam/dict"
	"github.com/wmnsk/milenage"

	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/topology"
)

// The store must satisfy the consumer interface.
var _ Subscribers = (*registry.Store)(nil)

// hang guards a wait in a test; it is not an assertion on time.
const hang = 15 * time.Second

var peerBins struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	if addr := os.Getenv("HSS_BENCH_SERVE"); addr != "" {
		os.Exit(benchServe(addr))
	}
	code := m.Run()
	if peerBins.dir != "" {
		os.RemoveAll(peerBins.dir)
	}
	os.Exit(code)
}

// requireTool skips (or, with RDV_REQUIRE_ALL=1, fails) when a tool is
// missing.
func requireTool(t testing.TB, why string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("RDV_REQUIRE_ALL") == "1" {
		t.Fatalf("%s: %v (RDV_REQUIRE_ALL=1)", why, err)
	}
	t.Skipf("%s: %v", why, err)
}

// exampleBinary builds go-diameter v4.3.0's examples/s6a_client and
// s6a_server once per test binary, offline from the module cache
// (notes/peers.md §4), and returns the path of name.
func exampleBinary(t testing.TB, name string) string {
	t.Helper()
	peerBins.once.Do(func() {
		dir, err := os.MkdirTemp("", "hss-peers-")
		if err != nil {
			peerBins.err = err
			return
		}
		peerBins.dir = dir
		gomod, err := exec.Command("go", "env", "GOMODCACHE").Output()
		if err != nil {
			peerBins.err = fmt.Errorf("go env: %w", err)
			return
		}
		modcache := string(gomod[:len(gomod)-1])
		src := filepath.Join(dir, "src")
		os.MkdirAll(src, 0o755)
		os.WriteFile(filepath.Join(src, "go.mod"), []byte("module diapeers\n\ngo 1.26\n\nrequire github.com/fiorix/go-diameter/v4 v4.3.0\n"), 0o644)
		build := func(env ...string) ([]byte, error) {
			cmd := exec.Command("go", "build", "-o", dir+"/",
				"github.com/fiorix/go-diameter/v4/examples/s6a_client",
				"github.com/fiorix/go-diameter/v4/examples/s6a_server")
			cmd.Dir = src
			cmd.Env = append(os.Environ(), append([]string{"GOFLAGS=-mod=mod", "GOSUMDB=off", "GOWORK=off"}, env...)...)
			return cmd.CombinedOutput()
		}
		// Offline from the module cache first; on a fresh machine whose
		// cache lacks what the examples' own go.mod selects, through the
		// configured proxy.
		if _, err := build("GOPROXY=file://" + modcache + "/cache/download"); err == nil {
			return
		}
		if out, err := build(); err != nil {
			peerBins.err = fmt.Errorf("build go-diameter examples: %w\n%s", err, out)
		}
	})
	requireTool(t, "go-diameter v4.3.0 examples", peerBins.err)
	return filepath.Join(peerBins.dir, name)
}

// ---- registry ----

func openStore(t testing.TB) *registry.Store { return openStoreSQN(t, 0) }

// openStoreSQN opens the registry on SQLite with SQNBlock sqnBlock (0:
// the registry's default).
func openStoreSQN(t testing.TB, sqnBlock int) *registry.Store {
	t.Helper()
	kek := make([]byte, 32)
	rand.Read(kek)
	st, err := registry.Open(context.Background(), registry.Config{
		DSN: "sqlite:" + filepath.Join(t.TempDir(), "registry.db"), Region: topology.JP,
		KEK: kek, KEKID: "test", SQNBlock: sqnBlock,
	})
	if err != nil {
		t.Fatalf("registry.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

var imsiSeq atomic.Uint64

// provision adds a subscriber with random keys and returns its USIM.
func provision(t testing.TB, st *registry.Store, mutate func(*registry.Subscriber)) (registry.Subscriber, *usim) {
	t.Helper()
	n := imsiSeq.Add(1)
	imsi := topology.IMSI(fmt.Sprintf("00101%010d", n))
	sub := registry.Subscriber{
		IMSI: imsi, MSISDN: fmt.Sprintf("8190%07d", n), Status: registry.StatusActive, HomeRegion: topology.JP,
		APNs: []registry.APN{
			{Name: "iot.rendezvous", PDNType: registry.PDNIPv4, QCI: 9, ARPPriority: 8, AMBRUplink: 1_000_000, AMBRDownlink: 2_000_000},
			{Name: "mgmt.rendezvous", PDNType: registry.PDNIPv4v6, QCI: 8, ARPPriority: 7, AMBRUplink: 64_000, AMBRDownlink: 64_000},
		},
		AMBRUplink: 5_000_000, AMBRDownlink: 10_000_000,
	}
	if mutate != nil {
		mutate(&sub)
	}
	var a registry.AuthData
	rand.Read(a.Ki[:])
	rand.Read(a.OPc[:])
	a.AMF = [2]byte{0x00, 0x00}
	if err := st.Provision(context.Background(), sub, a); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return sub, &usim{ki: a.Ki, opc: a.OPc}
}

// ---- server ----

var testPGWs = map[topology.RegionID]PGW{
	topology.JP: {Host: "topon.s5.pgw1.jp.node.rendezvous.example", Addr: netip.MustParseAddr("127.0.1.1")},
	topology.US: {Host: "topon.s5.pgw1.us.node.rendezvous.example", Addr: netip.MustParseAddr("127.0.2.1")},
	topology.DE: {Host: "topon.s5.pgw1.de.node.rendezvous.example", Addr: netip.MustParseAddr("127.0.3.1")},
	topology.AU: {Host: "topon.s5.pgw1.au.node.rendezvous.example", Addr: netip.MustParseAddr("127.0.4.1")},
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

func startHSS(t testing.TB, subs Subscribers, mutate func(*Config)) *Server {
	t.Helper()
	cfg := Config{
		OriginHost: "hss.jp.rendezvous.example", OriginRealm: "rendezvous.example",
		Listen:      []netip.AddrPort{netip.MustParseAddrPort("127.0.10.1:0")},
		Region:      topology.JP,
		Peers:       LabPeers(),
		Subscribers: subs,
		Steering:    NearestSteerer{Fallback: topology.JP},
		PGWs:        testPGWs,
		Logger:      testLogger(t),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// ---- scripted MME (go-diameter codec on the client side) ----

type testMME struct {
	t           testing.TB
	nc          net.Conn
	host, realm string
	wmu         sync.Mutex
	mu          sync.Mutex
	pending     map[uint32]chan *diam.Message
	hbh         atomic.Uint32
	sid         atomic.Uint64
	reqs        chan *diam.Message // requests the HSS sent us
	answerDWR   atomic.Bool
	dropCLR     atomic.Bool
	closed      chan struct{}
	done        chan struct{}
}

// dialMMEConn connects without CER.
func dialMMEConn(t testing.TB, addr netip.AddrPort, host string) *testMME {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 10, 9)}}
	nc, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c := &testMME{
		t: t, nc: nc, host: host, realm: "visited.example",
		pending: make(map[uint32]chan *diam.Message),
		reqs:    make(chan *diam.Message, 256),
		closed:  make(chan struct{}),
		done:    make(chan struct{}),
	}
	c.answerDWR.Store(true)
	var b [4]byte
	rand.Read(b[:])
	c.hbh.Store(binary.BigEndian.Uint32(b[:]))
	go c.readLoop()
	t.Cleanup(c.Close)
	return c
}

// dialMME connects and completes CER/CEA with 2001.
func dialMME(t testing.TB, addr netip.AddrPort, host string) *testMME {
	t.Helper()
	c := dialMMEConn(t, addr, host)
	cea := c.roundTrip(c.cer(true))
	if code, _ := answerResult(cea); code != codeSuccess {
		t.Fatalf("CEA %d", code)
	}
	return c
}

func (c *testMME) Close() {
	c.nc.Close()
	<-c.done
}

func (c *testMME) cer(s6a bool) *diam.Message {
	m := diam.NewRequest(diam.CapabilitiesExchange, 0, dict.Default)
	m.NewAVP(avp.OriginHost, fM, 0, datatype.DiameterIdentity(c.host))
	m.NewAVP(avp.OriginRealm, fM, 0, datatype.DiameterIdentity(c.realm))
	m.NewAVP(avp.HostIPAddress, fM, 0, datatype.Address(net.IPv4(127, 0, 10, 9)))
	m.NewAVP(avp.VendorID, fM, 0, datatype.Unsigned32(vendor3GPP))
	m.NewAVP(avp.ProductName, 0, 0, datatype.UTF8String("scripted-mme"))
	m.NewAVP(avp.SupportedVendorID, fM, 0, datatype.Unsigned32(vendor3GPP))
	app := uint32(appS6a)
	if !s6a {
		app = 16777238 // Gx
	}
	m.NewAVP(avp.VendorSpecificApplicationID, fM, 0, &diam.GroupedAVP{AVP: []*diam.AVP{
		diam.NewAVP(avp.VendorID, fM, 0, datatype.Unsigned32(vendor3GPP)),
		diam.NewAVP(avp.AuthApplicationID, fM, 0, datatype.Unsigned32(app)),
	}})
	return m
}

func (c *testMME) readLoop() {
	defer close(c.done)
	defer close(c.closed)
	br := bufio.NewReader(c.nc)
	for {
		m, err := diam.ReadMessage(br, dict.Default)
		if err != nil {
			return
		}
		if m.Header.CommandFlags&diam.RequestFlag == 0 {
			c.mu.Lock()
			ch := c.pending[m.Header.HopByHopID]
			delete(c.pending, m.Header.HopByHopID)
			c.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		answer := true
		switch m.Header.CommandCode {
		case cmdDWR:
			answer = c.answerDWR.Load()
		case cmdCLR:
			answer = !c.dropCLR.Load()
		}
		if answer {
			a := m.Answer(0)
			if m.Header.ApplicationID == appS6a {
				sid, _ := text(find(m.AVP, avp.SessionID))
				a.NewAVP(avp.SessionID, fM, 0, datatype.UTF8String(sid))
				a.AddAVP(s6aAppID())
				a.AddAVP(resultCode(codeSuccess))
				a.NewAVP(avp.AuthSessionState, fM, 0, datatype.Enumerated(1))
			} else {
				a.AddAVP(resultCode(codeSuccess))
			}
			a.NewAVP(avp.OriginHost, fM, 0, datatype.DiameterIdentity(c.host))
			a.NewAVP(avp.OriginRealm, fM, 0, datatype.DiameterIdentity(c.realm))
			c.write(a)
		}
		select {
		case c.reqs <- m:
		default:
		}
	}
}

func (c *testMME) write(m *diam.Message) error {
	b, err := m.Serialize()
	if err != nil {
		return err
	}
	return c.writeRaw(b)
}

func (c *testMME) writeRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(b)
	return err
}

// send writes m with fresh ids and returns the channel its answer arrives on.
func (c *testMME) send(m *diam.Message) chan *diam.Message {
	id := c.hbh.Add(1)
	m.Header.HopByHopID, m.Header.EndToEndID = id, id
	ch := make(chan *diam.Message, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	if err := c.write(m); err != nil {
		c.t.Errorf("write: %v", err)
	}
	return ch
}

func (c *testMME) roundTrip(m *diam.Message) *diam.Message {
	c.t.Helper()
	a, err := c.tryRoundTrip(m)
	if err != nil {
		c.t.Fatalf("%v", err)
	}
	return a
}

func (c *testMME) tryRoundTrip(m *diam.Message) (*diam.Message, error) {
	ch := c.send(m)
	select {
	case a := <-ch:
		return a, nil
	case <-c.closed:
		// The reader delivers an answer before it marks the close.
		select {
		case a := <-ch:
			return a, nil
		default:
		}
		return nil, fmt.Errorf("connection closed waiting for answer to %d", m.Header.CommandCode)
	case <-time.After(hang):
		return nil, fmt.Errorf("no answer to command %d", m.Header.CommandCode)
	}
}

// waitRequest returns the next request of code the HSS sent us.
func (c *testMME) waitRequest(code uint32) *diam.Message {
	c.t.Helper()
	deadline := time.After(hang)
	for {
		select {
		case m := <-c.reqs:
			if m.Header.CommandCode == code {
				return m
			}
		case <-deadline:
			c.t.Fatalf("no request %d from the HSS", code)
			return nil
		}
	}
}

func (c *testMME) waitClosed() {
	c.t.Helper()
	select {
	case <-c.closed:
	case <-time.After(hang):
		c.t.Fatalf("HSS did not close the connection")
	}
}

// newReq starts an S6a request as an MME sends it (TS 29.272 §7.2).
func (c *testMME) newReq(code uint32, imsi topology.IMSI) *diam.Message {
	m := diam.NewMessage(code, diam.RequestFlag|diam.ProxiableFlag, appS6a, 0, 0, dict.Default)
	m.NewAVP(avp.SessionID, fM, 0, datatype.UTF8String(c.host+";1;"+strconv.FormatUint(c.sid.Add(1), 10)))
	m.AddAVP(s6aAppID())
	m.NewAVP(avp.AuthSessionState, fM, 0, datatype.Enumerated(1))
	m.NewAVP(avp.OriginHost, fM, 0, datatype.DiameterIdentity(c.host))
	m.NewAVP(avp.OriginRealm, fM, 0, datatype.DiameterIdentity(c.realm))
	m.NewAVP(avp.DestinationRealm, fM, 0, datatype.DiameterIdentity("rendezvous.example"))
	m.NewAVP(avp.UserName, fM, 0, datatype.UTF8String(imsi))
	return m
}

func plmnOf(s string) topology.PLMN {
	p := topology.PLMN{MCC: topology.MCC(s[:3]), MNC: s[3:]}
	return p
}

func (c *testMME) air(imsi topology.IMSI, visited topology.PLMN, n int, resync []byte) *diam.Message {
	m := c.newReq(cmdAIR, imsi)
	bcd := visited.BCD()
	m.NewAVP(avp.VisitedPLMNID, fV, vendor3GPP, datatype.OctetString(bcd[:]))
	g := []*diam.AVP{
		diam.NewAVP(avp.NumberOfRequestedVectors, fV, vendor3GPP, datatype.Unsigned32(n)),
		diam.NewAVP(avp.ImmediateResponsePreferred, fV, vendor3GPP, datatype.Unsigned32(0)),
	}
	if resync != nil {
		g = append(g, diam.NewAVP(avp.ResynchronizationInfo, fV, vendor3GPP, datatype.OctetString(resync)))
	}
	m.NewAVP(avp.RequestedEUTRANAuthenticationInfo, fV, vendor3GPP, &diam.GroupedAVP{AVP: g})
	return m
}

func (c *testMME) ulr(imsi topology.IMSI, visited topology.PLMN, flags uint32, rat uint32) *diam.Message {
	m := c.newReq(cmdULR, imsi)
	m.NewAVP(avp.RATType, fV, vendor3GPP, datatype.Enumerated(rat))
	m.NewAVP(avp.ULRFlags, fV, vendor3GPP, datatype.Unsigned32(flags))
	bcd := visited.BCD()
	m.NewAVP(avp.VisitedPLMNID, fV, vendor3GPP, datatype.OctetString(bcd[:]))
	return m
}

// ---- USIM (TS 33.102 §6.3.3, Annex C) ----

type usim struct {
	ki, opc [16]byte
	seqMS   [32]uint64 // highest accepted SEQ per IND (Annex C.2.2)
	highest uint64     // highest accepted SQN (for AUTS)
	inds    map[uint64]bool
}

var errSyncFailure = errors.New("USIM: synchronisation failure")

// authenticate runs the USIM side of AKA on RAND and AUTN. It checks MAC-A
// and SQN freshness per IND; on a stale SQN it returns errSyncFailure and
// the AUTS to send back.
func (u *usim) authenticate(rnd, autn []byte) (res, ck, ik, auts []byte, err error) {
	m := milenage.NewWithOPc(u.ki[:], u.opc[:], rnd, 0, 0)
	res, ck, ik, ak, err := m.F2345()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	var sqn uint64
	for i := 0; i < 6; i++ {
		sqn = sqn<<8 | uint64(autn[i]^ak[i])
	}
	amf := binary.BigEndian.Uint16(autn[6:8])
	m2 := milenage.NewWithOPc(u.ki[:], u.opc[:], rnd, sqn, amf)
	mac, err := m2.F1()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if !hmac.Equal(mac, autn[8:16]) {
		return nil, nil, nil, nil, errors.New("USIM: MAC failure")
	}
	seq, ind := sqn>>5, sqn&31
	if seq <= u.seqMS[ind] {
		m3 := milenage.NewWithOPc(u.ki[:], u.opc[:], rnd, u.highest, 0)
		auts, err := m3.GenerateAUTS()
		if err != nil {
			return nil, nil, nil, nil, err
		}
		return nil, nil, nil, auts, errSyncFailure
	}
	u.seqMS[ind] = seq
	if sqn > u.highest {
		u.highest = sqn
	}
	if u.inds == nil {
		u.inds = map[uint64]bool{}
	}
	u.inds[ind] = true
	return res, ck, ik, nil, nil
}

// kasmeRef is TS 33.401 A.2 written out independently of the package.
func kasmeRef(ck, ik []byte, plmn [3]byte, autn []byte) []byte {
	mac := hmac.New(sha256.New, append(append([]byte{}, ck...), ik...))
	s := []byte{0x10, plmn[0], plmn[1], plmn[2], 0x00, 0x03}
	s = append(s, autn[:6]...)
	s = append(s, 0x00, 0x06)
	mac.Write(s)
	return mac.Sum(nil)
}

// vectors extracts the E-UTRAN vectors of an AIA.
type testVector struct{ rand, xres, autn, kasme, ck, ik []byte }

func eutranVectors(a *diam.Message) []testVector {
	var out []testVector
	for _, v := range children(find(a.AVP, avp.AuthenticationInfo), appS6a) {
		if v.Code != avp.EUTRANVector && v.Code != avpUTRANVector {
			continue
		}
		g := children(v, appS6a)
		get := func(code uint32) []byte { b, _ := octets(find(g, code)); return b }
		out = append(out, testVector{
			rand: get(avp.RAND), xres: get(avp.XRES), autn: get(avp.AUTN), kasme: get(avp.KASME),
			ck: get(avpConfidentialityKey), ik: get(avpIntegrityKey),
		})
	}
	return out
}

// mip6 extracts (Service-Selection, PGW host, PGW address) of each
// APN-Configuration of a ULA/IDR.
type apnPGW struct {
	apn, host, realm string
	addr             netip.Addr
	allocStatic      bool
	vplmnNotAllowed  bool
}

func apnPGWs(m *diam.Message) []apnPGW {
	var out []apnPGW
	sd := children(find(m.AVP, avp.SubscriptionData), appS6a)
	for _, c := range children(find(sd, avp.APNConfigurationProfile), appS6a) {
		if c.Code != avp.APNConfiguration {
			continue
		}
		g := children(c, appS6a)
		var r apnPGW
		r.apn, _ = text(find(g, avpServiceSelection))
		mip := children(find(g, avpMIP6AgentInfo), appS6a)
		if a := find(mip, avpMIPHomeAgentAddr); a != nil {
			switch d := a.Data.(type) {
			case datatype.Address:
				r.addr, _ = netip.AddrFromSlice(net.IP(d).To4())
			case datatype.Unknown:
				if len(d) == 6 {
					r.addr = netip.AddrFrom4([4]byte(d[2:6]))
				}
			}
		}
		hg := children(find(mip, avpMIPHomeAgentHost), appS6a)
		r.host, _ = text(find(hg, avp.DestinationHost))
		r.realm, _ = text(find(hg, avp.DestinationRealm))
		at, ok := u32(find(g, avp.PDNGWAllocationType))
		r.allocStatic = ok && at == 0
		va, ok := u32(find(g, avp.VPLMNDynamicAddressAllowed))
		r.vplmnNotAllowed = ok && va == 0
		out = append(out, r)
	}
	return out
}

var _ = io.EOF

// failingSubscribers injects registry.ErrUnavailable (the database down and
// nothing cached) in front of the real store.
type failingSubscribers struct {
	Subscribers
	down atomic.Bool
}

func (f *failingSubscribers) err() error {
	if f.down.Load() {
		return fmt.Errorf("injected: %w", registry.ErrUnavailable)
	}
	return nil
}

func (f *failingSubscribers) Subscriber(ctx context.Context, imsi topology.IMSI) (registry.Subscriber, error) {
	if err := f.err(); err != nil {
		return registry.Subscriber{}, err
	}
	return f.Subscribers.Subscriber(ctx, imsi)
}

func (f *failingSubscribers) NextSQNs(ctx context.Context, imsi topology.IMSI, r topology.RegionID, n int) ([]uint64, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Subscribers.NextSQNs(ctx, imsi, r, n)
}
