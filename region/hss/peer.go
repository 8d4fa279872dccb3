package hss

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fiorix/go-diameter/v4/diam"
	"github.com/fiorix/go-diameter/v4/diam/avp"
	"github.com/fiorix/go-diameter/v4/diam/datatype"
)

// peer is one Diameter connection (RFC 6733 §5.6, responder side). It owns
// three goroutines: the reader (which dispatches), the writer (which
// coalesces queued messages into few writes) and, once Open, the watchdog.
type peer struct {
	s   *Server
	nc  net.Conn
	src netip.AddrPort
	seq uint64

	out        chan []byte // serialized messages; nil = close after flush
	quit       chan struct{}
	quitOnce   sync.Once
	writerDone chan struct{}

	mu      sync.Mutex
	open    bool
	closing bool // DPR/CEA failure: ignore further input
	host    string
	realm   string
	pending map[uint32]chan *diam.Message // our requests by Hop-by-Hop

	rx  atomic.Bool   // traffic since the last watchdog tick (RFC 3539 §3.4.1)
	dwr atomic.Uint32 // Hop-by-Hop of our outstanding DWR, 0 = none
	dpr atomic.Uint32 // Hop-by-Hop of our DPR, 0 = none
}

func newPeer(s *Server, nc net.Conn) *peer {
	var src netip.AddrPort
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		src = ta.AddrPort()
	}
	return &peer{
		s: s, nc: nc, src: src, seq: s.connSeq.Add(1),
		out:        make(chan []byte, 1024),
		quit:       make(chan struct{}),
		writerDone: make(chan struct{}),
		pending:    make(map[uint32]chan *diam.Message),
	}
}

func (p *peer) openHost() (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.host, p.open && !p.closing
}

func (p *peer) identity() (host, realm string, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.host, p.realm, p.open && !p.closing
}

// abort closes the connection at once. Idempotent.
func (p *peer) abort() {
	p.quitOnce.Do(func() {
		p.mu.Lock()
		p.closing = true
		p.mu.Unlock()
		close(p.quit)
		p.nc.Close()
	})
}

// send queues a message. It fails only when the connection is gone.
func (p *peer) send(m *diam.Message) error {
	b, err := m.Serialize()
	if err != nil {
		return err
	}
	return p.sendRaw(b)
}

func (p *peer) sendRaw(b []byte) error {
	select {
	case p.out <- b:
		return nil
	case <-p.quit:
		return errPeerClosed
	}
}

// closeAfterFlush makes the writer close the connection once everything
// queued so far is written, and ignores further input.
func (p *peer) closeAfterFlush() {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	select {
	case p.out <- nil:
	case <-p.quit:
	}
}

// disconnect starts an orderly close: DPR with Disconnect-Cause REBOOTING
// (RFC 6733 §5.4.3); the reader closes on the DPA. Peers not yet Open are
// closed at once.
func (p *peer) disconnect() {
	if _, _, ok := p.identity(); !ok {
		p.abort()
		return
	}
	id := p.s.nextHopByHop()
	m := diam.NewMessage(cmdDPR, diam.RequestFlag, appBase, id, p.s.e2e.Add(1), dictionary)
	m.NewAVP(avp.OriginHost, fM, 0, datatype.DiameterIdentity(p.s.cfg.OriginHost))
	m.NewAVP(avp.OriginRealm, fM, 0, datatype.DiameterIdentity(p.s.cfg.OriginRealm))
	m.NewAVP(avp.DisconnectCause, fM, 0, datatype.Enumerated(0)) // REBOOTING
	p.dpr.Store(id)
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	if b, err := m.Serialize(); err == nil {
		select {
		case p.out <- b:
		default:
			p.abort()
		}
	}
}

func (p *peer) writeLoop() {
	defer p.s.wg.Done()
	defer close(p.writerDone)
	buf := make([]byte, 0, 16<<10)
	for {
		var b []byte
		select {
		case b = <-p.out:
		case <-p.quit:
			return
		}
		closeAfter := b == nil
		buf = append(buf[:0], b...)
		// Coalesce what is already queued into one write (one syscall for
		// many answers under load).
	drain:
		for !closeAfter && len(buf) < 64<<10 {
			select {
			case b = <-p.out:
				if b == nil {
					closeAfter = true
				} else {
					buf = append(buf, b...)
				}
			default:
				break drain
			}
		}
		if len(buf) > 0 {
			p.nc.SetWriteDeadline(time.Now().Add(p.s.cfg.WriteTimeout))
			if _, err := p.nc.Write(buf); err != nil {
				p.s.log.Debug("write failed", "peer", p.src, "err", err)
				p.abort()
				return
			}
		}
		if cap(buf) > 256<<10 {
			buf = make([]byte, 0, 16<<10)
		}
		if closeAfter {
			p.abort()
			return
		}
	}
}

func (p *peer) readLoop() {
	defer p.s.wg.Done()
	defer p.finish()
	br := bufio.NewReaderSize(p.nc, 32<<10)
	var hb [hdrLen]byte
	p.nc.SetReadDeadline(time.Now().Add(p.s.cfg.CERTimeout))
	for {
		if _, err := io.ReadFull(br, hb[:]); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				p.s.log.Debug("read failed", "peer", p.src, "err", err)
			}
			return
		}
		h := parseHeader(hb[:])
		if code := h.checkFraming(p.s.cfg.MaxMessageSize); code != 0 {
			// The stream cannot be re-synchronised: answer if we can and
			// close (RFC 6733 §3, §7.1.5).
			p.s.met.rejected.WithLabelValues("framing").Inc()
			p.s.log.Warn("framing violation, closing", "peer", p.src, "version", h.Version, "length", h.Length)
			if h.request() {
				p.sendRaw(p.errorAnswer(h, nil, code, 0))
			}
			p.closeAfterFlush()
			return
		}
		frame := make([]byte, h.Length)
		copy(frame, hb[:])
		if _, err := io.ReadFull(br, frame[hdrLen:]); err != nil {
			p.s.log.Debug("read body failed", "peer", p.src, "err", err)
			return
		}
		p.rx.Store(true)
		p.dispatch(h, frame)
	}
}

// finish runs when the reader stops: flush, close, forget, fail waiters.
func (p *peer) finish() {
	select {
	case p.out <- nil:
	case <-p.quit:
	}
	<-p.writerDone
	p.abort()
	p.mu.Lock()
	wasOpen := p.open
	p.open = false
	pend := p.pending
	p.pending = nil
	p.mu.Unlock()
	for _, ch := range pend {
		close(ch)
	}
	if wasOpen {
		p.s.met.peers.Dec()
	}
	p.s.remove(p)
}

// dispatch handles one framed message on the reader goroutine. Base
// protocol messages are answered here (so the watchdog never waits behind
// application requests); S6a requests go to a bounded pool of handlers.
func (p *peer) dispatch(h header, frame []byte) {
	p.mu.Lock()
	open, closing := p.open, p.closing
	p.mu.Unlock()
	m, err := decode(frame)
	var de *decodeError
	if err != nil {
		errors.As(err, &de)
	}
	if closing {
		// Only the DPA to our DPR matters now.
		if !h.request() && h.Code == cmdDPR && h.HopByHop == p.dpr.Load() {
			p.closeAfterFlush()
		}
		return
	}
	if !open {
		if h.Code != cmdCER || !h.request() || h.App != appBase {
			// RFC 6733 §5.6.4: nothing but CER before the handshake.
			p.s.met.rejected.WithLabelValues("before_cer").Inc()
			p.s.log.Info("message before CER, closing", "peer", p.src, "command", h.Code)
			p.closeAfterFlush()
			return
		}
		if de != nil {
			p.sendRaw(p.errorAnswer(h, frame, de.Code, de.AVPCode))
			p.closeAfterFlush()
			return
		}
		p.handleCER(m)
		return
	}
	if !h.request() {
		if m == nil {
			p.s.met.rejected.WithLabelValues("bad_answer").Inc()
			return
		}
		p.handleAnswer(h, m)
		return
	}
	if de != nil {
		p.s.met.rejected.WithLabelValues("malformed").Inc()
		p.s.met.requests.WithLabelValues(commandName(h.Code), resultLabel(de.Code, false)).Inc()
		p.s.log.Info("undecodable request", "peer", p.src, "command", h.Code, "app", h.App, "result", de.Code, "err", de.Err)
		p.sendRaw(p.errorAnswer(h, frame, de.Code, de.AVPCode))
		return
	}
	switch h.App {
	case appBase:
		switch h.Code {
		case cmdCER: // RFC 6733 §5.6 R-Open + R-Rcv-CER: answer again
			p.handleCER(m)
		case cmdDWR:
			p.handleDWR(m)
		case cmdDPR:
			p.handleDPR(m)
		default:
			p.unsupported(h, frame, codeCommandUnsupported)
		}
	case appS6a:
		switch h.Code {
		case cmdAIR, cmdULR, cmdPUR, cmdNOR:
			select {
			case p.s.sem <- struct{}{}:
			default:
				// RFC 6733 §7.1.3 DIAMETER_TOO_BUSY: the MME tries
				// another HSS; the reader never blocks.
				p.s.met.rejected.WithLabelValues("busy").Inc()
				p.unsupported(h, frame, codeTooBusy)
				return
			}
			// One goroutine per admitted request, at most MaxInFlight.
			// (Measured: cheaper than handing jobs to a pool of workers
			// over a channel, 20–25k vs 29–32k AIR/s.)
			p.s.met.inFlight.Inc()
			p.s.wg.Add(1)
			go func() {
				defer p.s.wg.Done()
				defer func() { <-p.s.sem; p.s.met.inFlight.Dec() }()
				p.run(job{h: h, m: m, frame: frame})
			}()
		default:
			p.unsupported(h, frame, codeCommandUnsupported)
		}
	default:
		p.unsupported(h, frame, codeAppUnsupported)
	}
}

func (p *peer) unsupported(h header, frame []byte, code uint32) {
	p.s.met.requests.WithLabelValues(commandName(h.Code), resultLabel(code, false)).Inc()
	p.sendRaw(p.errorAnswer(h, frame, code, 0))
}

// job is one admitted S6a request.
type job struct {
	h     header
	m     *diam.Message
	frame []byte
}

func (p *peer) run(j job) {
	defer func() {
		// Defence in depth, as net/http does: a bug in one handler must
		// not take the node down.
		if r := recover(); r != nil {
			p.s.met.rejected.WithLabelValues("handler_panic").Inc()
			p.s.log.Error("handler panic", "command", j.h.Code, "peer", p.src, "panic", r, "stack", string(debug.Stack()))
			p.sendRaw(p.errorAnswer(j.h, j.frame, codeUnableToComply, 0))
		}
	}()
	p.serveS6a(j.h, j.m)
}

// handleAnswer delivers an answer to the request waiting on its Hop-by-Hop
// id (RFC 6733 §6.2: an answer with an unknown id is discarded).
func (p *peer) handleAnswer(h header, m *diam.Message) {
	if h.App == appBase && h.Code == cmdDWR {
		if id := p.dwr.Load(); id != 0 && id == h.HopByHop {
			p.dwr.Store(0)
		}
		return
	}
	p.mu.Lock()
	ch, ok := p.pending[h.HopByHop]
	if ok {
		delete(p.pending, h.HopByHop)
	}
	p.mu.Unlock()
	if !ok {
		p.s.met.rejected.WithLabelValues("unexpected_answer").Inc()
		return
	}
	ch <- m
}

// await registers a pending request; the channel receives its answer or is
// closed when the connection goes away.
func (p *peer) await(id uint32) (chan *diam.Message, bool) {
	ch := make(chan *diam.Message, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending == nil {
		return nil, false
	}
	p.pending[id] = ch
	return ch, true
}

func (p *peer) forget(id uint32) {
	p.mu.Lock()
	if p.pending != nil {
		delete(p.pending, id)
	}
	p.mu.Unlock()
}

// watchdog is the RFC 3539 §3.4 device watchdog for this connection: after
// Tw without traffic it sends a DWR; after another Tw without any traffic it
// closes the connection. DWRs from the peer are answered by the reader.
func (p *peer) watchdog() {
	defer p.s.wg.Done()
	tw := p.s.cfg.WatchdogInterval
	t := p.s.cfg.Clock.NewTimer(tw)
	defer t.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-t.C():
		}
		if p.rx.Swap(false) {
			p.dwr.Store(0)
			t.Reset(tw)
			continue
		}
		if p.dwr.Load() != 0 {
			p.s.met.watchdogs.WithLabelValues("expired").Inc()
			host, _, _ := p.identity()
			p.s.log.Warn("watchdog expired, closing", "peer", p.src, "peer_host", host)
			p.abort()
			return
		}
		id := p.s.nextHopByHop()
		m := diam.NewMessage(cmdDWR, diam.RequestFlag, appBase, id, p.s.e2e.Add(1), dictionary)
		m.NewAVP(avp.OriginHost, fM, 0, datatype.DiameterIdentity(p.s.cfg.OriginHost))
		m.NewAVP(avp.OriginRealm, fM, 0, datatype.DiameterIdentity(p.s.cfg.OriginRealm))
		m.NewAVP(avp.OriginStateID, fM, 0, datatype.Unsigned32(p.s.stateID))
		p.dwr.Store(id)
		if err := p.send(m); err != nil {
			return
		}
		p.s.met.watchdogs.WithLabelValues("dwr_sent").Inc()
		t.Reset(tw)
	}
}
