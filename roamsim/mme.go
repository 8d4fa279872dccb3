package roamsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fiorix/go-diameter/v4/diam"
	"github.com/fiorix/go-diameter/v4/diam/avp"
	"github.com/fiorix/go-diameter/v4/diam/datatype"
	"github.com/fiorix/go-diameter/v4/diam/dict"
	"github.com/fiorix/go-diameter/v4/diam/sm"
	"github.com/fiorix/go-diameter/v4/diam/sm/smpeer"
)

const (
	vendor3GPP = 10415
	appS6a     = diam.TGPP_S6A_APP_ID // 16777251

	// ULR-Flags bits (TS 29.272 §7.3.7).
	ulrS6aIndicator     = 1 << 1
	ulrInitialAttach    = 1 << 5
	clrReattachRequired = 1 << 1 // CLR-Flags bit 1 (TS 29.272 §7.3.152)

	ratEUTRAN = 1004
)

// ErrDiameterDown is returned when the MME has no usable Diameter connection
// (none of its HSS peers answered, or the connection dropped mid-request).
var ErrDiameterDown = errors.New("roamsim: diameter connection down")

// DiameterError is a non-success S6a answer.
type DiameterError struct {
	Command string // "AIA", "ULA"
	// Code is the Result-Code, or the Experimental-Result-Code when
	// Experimental is true.
	Code         uint32
	Experimental bool
}

func (e *DiameterError) Error() string {
	if e.Experimental {
		return fmt.Sprintf("roamsim: %s Experimental-Result-Code %d", e.Command, e.Code)
	}
	return fmt.Sprintf("roamsim: %s Result-Code %d", e.Command, e.Code)
}

// mmeHandler receives the HSS-initiated requests an MME answers.
type mmeHandler interface {
	// cancelLocation is called (from the connection's read goroutine; it
	// must not block) after CLA was sent.
	cancelLocation(m *mme, imsi string, cancellationType uint32, reattach bool)
	// insertSubscriberData is called after IDA was sent; pgw is the new
	// MIP-Home-Agent-Address if the IDR carried one.
	insertSubscriberData(m *mme, imsi string, pgw netip.Addr)
}

// mme is one emulated MME: one Diameter connection at a time to one of its
// HSS peers, redialled (next peer) when it drops.
type mme struct {
	name        string // e.g. "de"
	originHost  string
	originRealm string
	destRealm   string // "" = the peer's Origin-Realm
	peers       []string
	first       int // preferred peer index
	local       netip.Addr
	timeout     time.Duration
	dwr         time.Duration
	log         *slog.Logger
	h           mmeHandler

	hbh atomic.Uint32
	sid atomic.Uint64

	mu      sync.Mutex
	conn    diam.Conn
	realm   string        // destination realm in use
	up      chan struct{} // closed while connected; replaced on disconnect
	pending map[uint32]chan *diam.Message

	connects atomic.Uint64
	// dwaPending: a DWR is unanswered; timeouts: consecutive request
	// timeouts. Either closes a hung connection (RFC 3539 watchdog).
	dwaPending atomic.Bool
	timeouts   atomic.Int32
}

// maxTimeouts consecutive unanswered requests close the connection.
const maxTimeouts = 3

func newMME(name, originHost, originRealm, destRealm string, peers []string, first int, local netip.Addr,
	timeout, dwr time.Duration, log *slog.Logger, h mmeHandler) *mme {
	m := &mme{name: name, originHost: originHost, originRealm: originRealm, destRealm: destRealm,
		peers: peers, first: first, local: local, timeout: timeout, dwr: dwr, log: log, h: h,
		up: make(chan struct{}), pending: map[uint32]chan *diam.Message{}}
	m.hbh.Store(rand.Uint32())
	return m
}

// run keeps a connection up until ctx ends; it owns the connection and the
// DWR loop and closes the connection before returning.
func (m *mme) run(ctx context.Context) {
	backoff, streak := 100*time.Millisecond, 0
	for i := 0; ctx.Err() == nil; i++ {
		peer := m.peers[(m.first+i)%len(m.peers)]
		c, st, err := m.dial(ctx, peer)
		if err != nil {
			streak++
			lvl := slog.LevelDebug
			if streak == 1 || streak%20 == 0 {
				lvl = slog.LevelWarn
			}
			m.log.Log(ctx, lvl, "roamsim: mme dial", "mme", m.originHost, "peer", peer, "failures", streak, "err", err)
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff, streak = 100*time.Millisecond, 0
		m.connects.Add(1)
		m.log.Info("roamsim: mme connected", "mme", m.originHost, "peer", peer)
		m.serve(ctx, c, st)
		// After a drop, move on to the next peer (a dead region's HSS
		// is not retried first).
		if !sleepCtx(ctx, backoff) {
			return
		}
	}
}

func (m *mme) dial(ctx context.Context, peer string) (diam.Conn, *sm.StateMachine, error) {
	st := sm.New(&sm.Settings{
		OriginHost:       datatype.DiameterIdentity(m.originHost),
		OriginRealm:      datatype.DiameterIdentity(m.originRealm),
		VendorID:         vendor3GPP,
		ProductName:      "roamsim",
		OriginStateID:    datatype.Unsigned32(time.Now().Unix()),
		FirmwareRevision: 1,
	})
	// Register everything before dialling (notes/diameter.md T14).
	deliver := diam.HandlerFunc(m.deliver)
	st.HandleIdx(diam.CommandIndex{AppID: appS6a, Code: diam.AuthenticationInformation, Request: false}, deliver)
	st.HandleIdx(diam.CommandIndex{AppID: appS6a, Code: diam.UpdateLocation, Request: false}, deliver)
	st.HandleIdx(diam.CommandIndex{AppID: appS6a, Code: diam.PurgeUE, Request: false}, deliver)
	st.HandleFunc("DWA", func(diam.Conn, *diam.Message) { m.dwaPending.Store(false) })
	st.HandleIdx(diam.CommandIndex{AppID: appS6a, Code: diam.CancelLocation, Request: true}, diam.HandlerFunc(m.handleCLR))
	st.HandleIdx(diam.CommandIndex{AppID: appS6a, Code: diam.InsertSubscriberData, Request: true}, diam.HandlerFunc(m.handleIDR))
	st.HandleIdx(diam.CommandIndex{AppID: appS6a, Code: diam.DeleteSubscriberData, Request: true}, diam.HandlerFunc(m.handleDSR))
	st.HandleIdx(diam.CommandIndex{AppID: 0, Code: diam.DisconnectPeer, Request: true}, diam.HandlerFunc(m.handleDPR))
	st.HandleFunc("ALL", m.handleOther)
	cli := &sm.Client{
		Dict:               dict.Default,
		Handler:            st,
		MaxRetransmits:     1,
		RetransmitInterval: m.timeout,
		EnableWatchdog:     false, // T12: we run our own DWR loop
		SupportedVendorID:  []*diam.AVP{diam.NewAVP(avp.SupportedVendorID, avp.Mbit, 0, datatype.Unsigned32(vendor3GPP))},
		VendorSpecificApplicationID: []*diam.AVP{diam.NewAVP(avp.VendorSpecificApplicationID, avp.Mbit, 0, &diam.GroupedAVP{AVP: []*diam.AVP{
			diam.NewAVP(avp.AuthApplicationID, avp.Mbit, 0, datatype.Unsigned32(appS6a)),
			diam.NewAVP(avp.VendorID, avp.Mbit, 0, datatype.Unsigned32(vendor3GPP))}})},
	}
	var laddr net.Addr
	if m.local.IsValid() {
		laddr = &net.TCPAddr{IP: m.local.AsSlice()}
	}
	type res struct {
		c   diam.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := cli.DialExt("tcp", peer, m.timeout, laddr)
		ch <- res{c, err}
	}()
	var r res
	select {
	case r = <-ch:
	case <-ctx.Done():
		r = <-ch // DialExt is bounded by timeout and the handshake retransmits
		if r.c != nil {
			r.c.Close()
		}
		return nil, nil, ctx.Err()
	}
	if r.err != nil {
		return nil, nil, fmt.Errorf("roamsim: dial %s: %w", peer, r.err)
	}
	return r.c, st, nil
}

// drainErrors empties the state machine's one-slot error channel until the
// connection closes (notes/diameter.md §6).
func drainErrors(c diam.Conn, st *sm.StateMachine, log *slog.Logger, host string) {
	closed := c.(diam.CloseNotifier).CloseNotify()
	for {
		select {
		case <-closed:
			return
		case e := <-st.ErrorReports():
			if e != nil && e.Error != nil && !strings.Contains(e.Error.Error(), "use of closed") {
				log.Debug("roamsim: diameter error report", "mme", host, "err", e.Error)
			}
		}
	}
}

func (m *mme) serve(ctx context.Context, c diam.Conn, st *sm.StateMachine) {
	drained := make(chan struct{})
	go func() { drainErrors(c, st, m.log, m.originHost); close(drained) }()
	realm := m.destRealm
	if realm == "" {
		if meta, ok := smpeer.FromContext(c.Context()); ok {
			realm = string(meta.OriginRealm)
		}
	}
	m.mu.Lock()
	m.conn, m.realm = c, realm
	close(m.up)
	m.mu.Unlock()

	closed := c.(diam.CloseNotifier).CloseNotify()
	m.dwaPending.Store(false)
	m.timeouts.Store(0)
	// The watchdog ticks at least every second so that request timeouts
	// close a hung peer quickly; DWRs go out every m.dwr.
	t := time.NewTicker(min(m.dwr, time.Second))
	lastDWR := time.Now()
	defer t.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-closed:
			m.log.Warn("roamsim: mme connection lost", "mme", m.originHost, "peer", c.RemoteAddr())
			break loop
		case <-t.C:
			if m.timeouts.Load() >= maxTimeouts || (m.dwaPending.Load() && time.Since(lastDWR) >= m.dwr) {
				m.log.Warn("roamsim: mme peer unresponsive, closing", "mme", m.originHost, "peer", c.RemoteAddr())
				break loop
			}
			if time.Since(lastDWR) < m.dwr {
				continue
			}
			lastDWR = time.Now()
			m.dwaPending.Store(true)
			d := diam.NewRequest(diam.DeviceWatchdog, 0, dict.Default)
			d.NewAVP(avp.OriginHost, avp.Mbit, 0, datatype.DiameterIdentity(m.originHost))
			d.NewAVP(avp.OriginRealm, avp.Mbit, 0, datatype.DiameterIdentity(m.originRealm))
			if _, err := d.WriteTo(c); err != nil {
				break loop
			}
		}
	}
	c.Close()
	<-drained
	m.mu.Lock()
	m.conn = nil
	m.up = make(chan struct{})
	for id, ch := range m.pending {
		close(ch)
		delete(m.pending, id)
	}
	m.mu.Unlock()
}

// deliver hands an answer to the request waiting on its Hop-by-Hop id.
func (m *mme) deliver(_ diam.Conn, a *diam.Message) {
	m.mu.Lock()
	ch, ok := m.pending[a.Header.HopByHopID]
	delete(m.pending, a.Header.HopByHopID)
	m.mu.Unlock()
	if ok {
		m.timeouts.Store(0)
		ch <- a // buffered 1
	}
}

// newRequest builds an S6a request with the common AVPs.
func (m *mme) newRequest(cmd uint32, imsi string) (*diam.Message, error) {
	id := m.hbh.Add(1)
	r := diam.NewMessage(cmd, diam.RequestFlag|diam.ProxiableFlag, appS6a, id, id, dict.Default)
	sid := fmt.Sprintf("%s;%d;%d", m.originHost, time.Now().Unix(), m.sid.Add(1))
	r.NewAVP(avp.SessionID, avp.Mbit, 0, datatype.UTF8String(sid))
	r.AddAVP(vsai())
	r.NewAVP(avp.AuthSessionState, avp.Mbit, 0, datatype.Enumerated(1))
	r.NewAVP(avp.OriginHost, avp.Mbit, 0, datatype.DiameterIdentity(m.originHost))
	r.NewAVP(avp.OriginRealm, avp.Mbit, 0, datatype.DiameterIdentity(m.originRealm))
	return r, nil
}

// roundTrip sends r (adding Destination-Realm and User-Name) and waits for
// its answer.
func (m *mme) roundTrip(ctx context.Context, r *diam.Message, imsi string) (*diam.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	var c diam.Conn
	for {
		m.mu.Lock()
		c, up := m.conn, m.up
		m.mu.Unlock()
		if c != nil {
			break
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%s): %w", ErrDiameterDown, m.originHost, ctx.Err())
		}
	}
	m.mu.Lock()
	c, realm := m.conn, m.realm
	if c == nil {
		m.mu.Unlock()
		return nil, fmt.Errorf("%w (%s)", ErrDiameterDown, m.originHost)
	}
	ch := make(chan *diam.Message, 1)
	id := r.Header.HopByHopID
	m.pending[id] = ch
	m.mu.Unlock()
	r.NewAVP(avp.DestinationRealm, avp.Mbit, 0, datatype.DiameterIdentity(realm))
	r.NewAVP(avp.UserName, avp.Mbit, 0, datatype.UTF8String(imsi))
	if _, err := r.WriteTo(c); err != nil {
		m.forget(id)
		return nil, fmt.Errorf("%w (%s): write: %w", ErrDiameterDown, m.originHost, err)
	}
	select {
	case a, ok := <-ch:
		if !ok {
			return nil, fmt.Errorf("%w (%s): connection lost waiting for the answer", ErrDiameterDown, m.originHost)
		}
		return a, nil
	case <-ctx.Done():
		m.forget(id)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			m.timeouts.Add(1)
			return nil, fmt.Errorf("%w: no answer within %v", ErrTimeout, m.timeout)
		}
		return nil, ctx.Err()
	}
}

func (m *mme) forget(id uint32) {
	m.mu.Lock()
	delete(m.pending, id)
	m.mu.Unlock()
}

// AIR sends an Authentication-Information-Request for one E-UTRAN vector;
// resync, if not nil, is RAND‖AUTS.
func (m *mme) AIR(ctx context.Context, imsi string, visited [3]byte, resync []byte) ([]Vector, error) {
	r, _ := m.newRequest(diam.AuthenticationInformation, imsi)
	req := []*diam.AVP{
		diam.NewAVP(avp.NumberOfRequestedVectors, avp.Mbit|avp.Vbit, vendor3GPP, datatype.Unsigned32(1)),
		diam.NewAVP(avp.ImmediateResponsePreferred, avp.Mbit|avp.Vbit, vendor3GPP, datatype.Unsigned32(0)),
	}
	if resync != nil {
		req = append(req, diam.NewAVP(avp.ResynchronizationInfo, avp.Mbit|avp.Vbit, vendor3GPP, datatype.OctetString(resync)))
	}
	r.NewAVP(avp.RequestedEUTRANAuthenticationInfo, avp.Mbit|avp.Vbit, vendor3GPP, &diam.GroupedAVP{AVP: req})
	r.NewAVP(avp.VisitedPLMNID, avp.Mbit|avp.Vbit, vendor3GPP, datatype.OctetString(visited[:]))
	a, err := m.roundTrip(ctx, r, imsi)
	if err != nil {
		return nil, fmt.Errorf("roamsim: AIR: %w", err)
	}
	if err := resultOf("AIA", a.AVP); err != nil {
		return nil, err
	}
	var vs []Vector
	for _, ai := range children(a.AVP, avp.AuthenticationInfo) {
		for _, ev := range children(grouped(ai), avp.EUTRANVector) {
			g := grouped(ev)
			vs = append(vs, Vector{RAND: octets(first(g, avp.RAND)), XRES: octets(first(g, avp.XRES)),
				AUTN: octets(first(g, avp.AUTN)), KASME: octets(first(g, avp.KASME))})
		}
	}
	if len(vs) == 0 {
		return nil, &FormatError{Msg: "AIA", Detail: "2001 without an E-UTRAN-Vector"}
	}
	return vs, nil
}

// ulaInfo is what the MME takes from an Update-Location-Answer.
type ulaInfo struct {
	PGW     netip.Addr // MIP-Home-Agent-Address
	PGWHost string     // MIP-Home-Agent-Host/Destination-Host
	APN     string     // Service-Selection of the chosen APN-Configuration
	MSISDN  string
}

// ULR sends an Update-Location-Request and returns the PGW of the APN.
func (m *mme) ULR(ctx context.Context, imsi string, visited [3]byte, apn string) (ulaInfo, error) {
	r, _ := m.newRequest(diam.UpdateLocation, imsi)
	r.NewAVP(avp.RATType, avp.Mbit|avp.Vbit, vendor3GPP, datatype.Enumerated(ratEUTRAN))
	r.NewAVP(avp.ULRFlags, avp.Mbit|avp.Vbit, vendor3GPP, datatype.Unsigned32(ulrS6aIndicator|ulrInitialAttach))
	r.NewAVP(avp.VisitedPLMNID, avp.Mbit|avp.Vbit, vendor3GPP, datatype.OctetString(visited[:]))
	a, err := m.roundTrip(ctx, r, imsi)
	if err != nil {
		return ulaInfo{}, fmt.Errorf("roamsim: ULR: %w", err)
	}
	if err := resultOf("ULA", a.AVP); err != nil {
		return ulaInfo{}, err
	}
	return parseSubscription("ULA", a.AVP, apn)
}

// parseSubscription picks the APN-Configuration for apn ("" = the
// profile's default Context-Identifier) and reads its MIP6-Agent-Info.
func parseSubscription(cmd string, avps []*diam.AVP, apn string) (ulaInfo, error) {
	sd := first(avps, avp.SubscriptionData)
	if sd == nil {
		return ulaInfo{}, &FormatError{Msg: cmd, Detail: "no Subscription-Data"}
	}
	var info ulaInfo
	if ms := octets(first(grouped(sd), avp.MSISDN)); ms != nil {
		info.MSISDN = tbcd(ms)
	}
	prof := first(grouped(sd), avp.APNConfigurationProfile)
	if prof == nil {
		return info, &FormatError{Msg: cmd, Detail: "no APN-Configuration-Profile"}
	}
	def, _ := u32(first(grouped(prof), avp.ContextIdentifier))
	var chosen []*diam.AVP
	for _, ac := range children(grouped(prof), avp.APNConfiguration) {
		g := grouped(ac)
		name := str(first(g, avp.ServiceSelection))
		ctxID, _ := u32(first(g, avp.ContextIdentifier))
		if (apn != "" && strings.EqualFold(name, apn)) || (apn == "" && ctxID == def) {
			chosen = g
			info.APN = name
			break
		}
		if chosen == nil && apn == "" {
			chosen, info.APN = g, name
		}
	}
	if chosen == nil {
		return info, &FormatError{Msg: cmd, Detail: fmt.Sprintf("no APN-Configuration for APN %q", apn)}
	}
	mip := first(chosen, avp.MIP6AgentInfo)
	if mip == nil {
		return info, &FormatError{Msg: cmd, Detail: fmt.Sprintf("APN %q: no MIP6-Agent-Info (no PGW named)", info.APN)}
	}
	for _, a := range children(grouped(mip), avp.MIPHomeAgentAddress) {
		if ip, ok := address(a); ok && (!info.PGW.IsValid() || ip.Is4()) {
			info.PGW = ip
		}
	}
	if h := first(grouped(mip), avp.MIPHomeAgentHost); h != nil {
		info.PGWHost = str(first(grouped(h), avp.DestinationHost))
	}
	if !info.PGW.IsValid() {
		return info, &FormatError{Msg: cmd, Detail: fmt.Sprintf("APN %q: MIP6-Agent-Info without a usable MIP-Home-Agent-Address (host %q)", info.APN, info.PGWHost)}
	}
	return info, nil
}

// vsai is Vendor-Specific-Application-Id {3GPP, S6a}.
func vsai() *diam.AVP {
	return diam.NewAVP(avp.VendorSpecificApplicationID, avp.Mbit, 0, &diam.GroupedAVP{AVP: []*diam.AVP{
		diam.NewAVP(avp.VendorID, avp.Mbit, 0, datatype.Unsigned32(vendor3GPP)),
		diam.NewAVP(avp.AuthApplicationID, avp.Mbit, 0, datatype.Unsigned32(appS6a))}})
}

func (m *mme) answer(c diam.Conn, req *diam.Message, code uint32) *diam.Message {
	a := req.Answer(0)
	if sid := first(req.AVP, avp.SessionID); sid != nil {
		a.AddAVP(sid)
	}
	a.NewAVP(avp.ResultCode, avp.Mbit, 0, datatype.Unsigned32(code))
	a.NewAVP(avp.AuthSessionState, avp.Mbit, 0, datatype.Enumerated(1))
	a.NewAVP(avp.OriginHost, avp.Mbit, 0, datatype.DiameterIdentity(m.originHost))
	a.NewAVP(avp.OriginRealm, avp.Mbit, 0, datatype.DiameterIdentity(m.originRealm))
	return a
}

func (m *mme) handleCLR(c diam.Conn, req *diam.Message) {
	imsi := str(first(req.AVP, avp.UserName))
	ct, _ := u32(first(req.AVP, avp.CancellationType))
	flags, _ := u32(first(req.AVP, avp.CLRFlags))
	a := m.answer(c, req, diam.Success)
	a.AddAVP(vsai())
	if _, err := a.WriteTo(c); err != nil {
		m.log.Warn("roamsim: write CLA", "mme", m.originHost, "err", err)
	}
	if imsi != "" {
		m.h.cancelLocation(m, imsi, ct, flags&clrReattachRequired != 0)
	}
}

func (m *mme) handleIDR(c diam.Conn, req *diam.Message) {
	imsi := str(first(req.AVP, avp.UserName))
	a := m.answer(c, req, diam.Success)
	a.AddAVP(vsai())
	if _, err := a.WriteTo(c); err != nil {
		m.log.Warn("roamsim: write IDA", "mme", m.originHost, "err", err)
	}
	var pgw netip.Addr
	if info, err := parseSubscription("IDR", req.AVP, ""); err == nil {
		pgw = info.PGW
	}
	if imsi != "" {
		m.h.insertSubscriberData(m, imsi, pgw)
	}
}

func (m *mme) handleDSR(c diam.Conn, req *diam.Message) {
	a := m.answer(c, req, diam.Success)
	a.AddAVP(vsai())
	if _, err := a.WriteTo(c); err != nil {
		m.log.Warn("roamsim: write DSA", "mme", m.originHost, "err", err)
	}
}

// handleOther answers requests we do not implement (RSR, NOR …) with 3001
// DIAMETER_COMMAND_UNSUPPORTED and the E bit (RFC 6733 §7.1.3); other
// answers are late or unknown and dropped.
func (m *mme) handleOther(c diam.Conn, req *diam.Message) {
	if req.Header.CommandFlags&diam.RequestFlag == 0 {
		return
	}
	a := m.answer(c, req, 3001)
	a.Header.CommandFlags |= diam.ErrorFlag
	a.WriteTo(c)
}

func (m *mme) handleDPR(c diam.Conn, req *diam.Message) {
	a := req.Answer(diam.Success)
	a.NewAVP(avp.OriginHost, avp.Mbit, 0, datatype.DiameterIdentity(m.originHost))
	a.NewAVP(avp.OriginRealm, avp.Mbit, 0, datatype.DiameterIdentity(m.originRealm))
	a.WriteTo(c)
	c.Close()
}

// ---- defensive AVP access: a malformed answer is a failure, never a panic.

// FormatError is an answer from the core under test that lacks something
// the visited network needs.
type FormatError struct {
	Msg, Detail string
}

func (e *FormatError) Error() string { return "roamsim: malformed " + e.Msg + ": " + e.Detail }

func resultOf(cmd string, avps []*diam.AVP) error {
	if rc, ok := u32(first(avps, avp.ResultCode)); ok {
		if rc == diam.Success {
			return nil
		}
		return &DiameterError{Command: cmd, Code: rc}
	}
	if er := first(avps, avp.ExperimentalResult); er != nil {
		if code, ok := u32(first(grouped(er), avp.ExperimentalResultCode)); ok {
			if code == diam.Success {
				return nil
			}
			return &DiameterError{Command: cmd, Code: code, Experimental: true}
		}
	}
	return &FormatError{Msg: cmd, Detail: "neither Result-Code nor Experimental-Result"}
}

func grouped(a *diam.AVP) []*diam.AVP {
	if a == nil || a.Data == nil {
		return nil
	}
	if g, ok := a.Data.(*diam.GroupedAVP); ok && g != nil {
		return g.AVP
	}
	return nil
}

func children(avps []*diam.AVP, code uint32) []*diam.AVP {
	var out []*diam.AVP
	for _, a := range avps {
		if a != nil && a.Code == code {
			out = append(out, a)
		}
	}
	return out
}

func first(avps []*diam.AVP, code uint32) *diam.AVP {
	for _, a := range avps {
		if a != nil && a.Code == code {
			return a
		}
	}
	return nil
}

func u32(a *diam.AVP) (uint32, bool) {
	if a == nil || a.Data == nil {
		return 0, false
	}
	switch v := a.Data.(type) {
	case datatype.Unsigned32:
		return uint32(v), true
	case datatype.Enumerated:
		return uint32(v), true
	case datatype.Integer32:
		return uint32(v), true
	}
	return 0, false
}

func octets(a *diam.AVP) []byte {
	if a == nil || a.Data == nil {
		return nil
	}
	switch v := a.Data.(type) {
	case datatype.OctetString:
		return []byte(v)
	case datatype.Unknown:
		return []byte(v)
	case datatype.UTF8String:
		return []byte(v)
	}
	return nil
}

func str(a *diam.AVP) string {
	if a == nil || a.Data == nil {
		return ""
	}
	switch v := a.Data.(type) {
	case datatype.UTF8String:
		return string(v)
	case datatype.DiameterIdentity:
		return string(v)
	case datatype.OctetString:
		return string(v)
	case datatype.Unknown:
		return string(v)
	}
	return ""
}

func address(a *diam.AVP) (netip.Addr, bool) {
	if a == nil || a.Data == nil {
		return netip.Addr{}, false
	}
	var b []byte
	switch v := a.Data.(type) {
	case datatype.Address:
		b = []byte(v)
	case datatype.OctetString:
		b = []byte(v)
	case datatype.Unknown:
		b = []byte(v)
	default:
		return netip.Addr{}, false
	}
	// datatype.Address decodes to the bare IP; raw forms carry the 2-octet
	// address family (RFC 6733 §4.3.1).
	switch {
	case len(b) == 4 || len(b) == 16:
	case len(b) == 6 && b[0] == 0 && b[1] == 1, len(b) == 18 && b[0] == 0 && b[1] == 2:
		b = b[2:]
	default:
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(b)
	return ip.Unmap(), ok
}

// tbcd decodes TBCD digits (MSISDN).
func tbcd(b []byte) string {
	var s strings.Builder
	for _, x := range b {
		for _, d := range []byte{x & 0xf, x >> 4} {
			if d <= 9 {
				s.WriteByte('0' + d)
			}
		}
	}
	return s.String()
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
