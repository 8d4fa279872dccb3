package gtpc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Message is an encodable GTP message: every go-gtp gtpv1/gtpv2 message
// implements it.
type Message interface {
	MarshalLen() int
	MarshalTo([]byte) error
}

// Request is one incoming GTP-C request as a Handler sees it.
type Request struct {
	Header Header
	// Raw is the message (Header.Len octets). It is owned by the endpoint
	// and valid only during HandleRequest.
	Raw []byte
	// Peer is the UDP source: the response goes there (TS 29.274 §4.2,
	// TS 29.060 §7.1).
	Peer netip.AddrPort
	// Local is our address the request arrived on; F-TEIDs and GSN Address
	// IEs in the response should name it.
	Local netip.AddrPort
}

// Handler serves the requests of one GTP version. Echo is answered by the
// Endpoint itself; every other request goes to the Handler. The Endpoint
// runs handlers on its bounded worker pool: requests of one peer with the
// same header TEID (or, for TEID 0, the same sequence number) are handled
// in order, by one worker.
type Handler interface {
	// HandleRequest returns the response to send (its sequence number must
	// be the request's), or nil to send nothing. An error is logged and
	// counted and nothing is sent: handlers should prefer a response with a
	// rejection cause.
	HandleRequest(r *Request) (Message, error)
	// PeerRestarted removes the sessions of a peer whose restart was
	// detected and returns how many it removed.
	PeerRestarted(ev PeerRestart) int
}

type socket struct {
	idx  int
	addr netip.AddrPort
	conn *net.UDPConn
}

type job struct {
	s    *socket
	peer netip.AddrPort
	h    Header
	b    []byte
}

type cacheKey struct {
	v     Version
	typ   uint8
	local uint8
	seq   uint32
	peer  netip.AddrPort
}

type cacheEntry struct {
	resp    []byte // nil while the request is being handled
	expires int64  // unix nanoseconds
	slot    uint64 // insertion number: the entry's place in cacheRing
}

type pendKey struct {
	v    Version
	seq  uint32
	peer netip.Addr
}

type peerKey struct {
	v    Version
	addr netip.Addr
}

type peerState struct {
	port      uint16
	local     *socket
	lastSeen  int64
	known     bool
	recovery  uint8
	echoing   bool
	pathAlive bool
}

type handlerRef struct{ h Handler }

// Endpoint is a node's GTP-C endpoint: one UDP socket per configured
// address, shared by GTPv1-C and GTPv2-C. New binds and starts it; Close
// stops it and waits for its goroutines.
type Endpoint struct {
	cfg      Config
	restart  uint8
	socks    []*socket
	handlers [3]atomic.Pointer[handlerRef]
	queues   []chan job
	seq1     atomic.Uint32
	seq2     atomic.Uint32
	m        *metrics

	cacheMu   sync.Mutex
	cache     map[cacheKey]*cacheEntry
	cacheRing []cacheKey // insertion order, MaxCachedResponses slots
	cacheN    uint64     // entries inserted so far

	pendMu  sync.Mutex
	pending map[pendKey]chan []byte

	peersMu sync.Mutex
	peers   map[peerKey]*peerState

	done      chan struct{}
	readers   sync.WaitGroup
	workers   sync.WaitGroup
	bg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg, increments the persisted restart counter, binds every
// address and starts the readers, the worker pool, the response-cache
// janitor and the Echo loop.
func New(cfg Config) (*Endpoint, error) {
	cfg.Addrs = append([]netip.AddrPort(nil), cfg.Addrs...)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	rc, err := bumpRestartCounter(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	e := &Endpoint{
		cfg:     cfg,
		restart: rc,
		m:       m,
		cache:   make(map[cacheKey]*cacheEntry),
		pending: make(map[pendKey]chan []byte),
		peers:   make(map[peerKey]*peerState),
		done:    make(chan struct{}),
	}
	// Start our sequence numbers at random so that a restarted node does
	// not collide with a peer's duplicate cache of our previous life.
	e.seq1.Store(rand.Uint32N(1 << 16))
	e.seq2.Store(rand.Uint32N(1 << 23))
	for i, a := range cfg.Addrs {
		network := "udp4"
		if a.Addr().Is6() {
			network = "udp6"
		}
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(a))
		if err != nil {
			for _, s := range e.socks {
				s.conn.Close()
			}
			return nil, fmt.Errorf("gtpc: listen %v: %w", a, err)
		}
		_ = c.SetReadBuffer(cfg.ReadBuffer) // best effort: the kernel caps it
		_ = c.SetWriteBuffer(cfg.ReadBuffer)
		e.socks = append(e.socks, &socket{idx: i, addr: a, conn: c})
	}
	per := cfg.QueueLen / cfg.Workers
	e.queues = make([]chan job, cfg.Workers)
	for i := range e.queues {
		e.queues[i] = make(chan job, per)
		e.workers.Add(1)
		go e.worker(e.queues[i])
	}
	for _, s := range e.socks {
		e.readers.Add(1)
		go e.readLoop(s)
	}
	e.bg.Add(1)
	go e.janitor()
	if cfg.EchoInterval > 0 {
		e.bg.Add(1)
		go e.echoLoop()
	}
	cfg.Logger.Info("gtpc: endpoint started", "addrs", cfg.Addrs, "restart_counter", rc,
		"workers", cfg.Workers, "queue", cfg.QueueLen)
	return e, nil
}

// RestartCounter is our Recovery value for this life of the node.
func (e *Endpoint) RestartCounter() uint8 { return e.restart }

// Addrs returns the bound addresses.
func (e *Endpoint) Addrs() []netip.AddrPort {
	out := make([]netip.AddrPort, len(e.socks))
	for i, s := range e.socks {
		out[i] = s.addr
	}
	return out
}

// Handle sets the handler of a version (V1 or V2); nil removes it. Requests
// of a version without a handler are dropped and counted.
func (e *Endpoint) Handle(v Version, h Handler) {
	if v != V1 && v != V2 {
		return
	}
	if h == nil {
		e.handlers[v].Store(nil)
		return
	}
	e.handlers[v].Store(&handlerRef{h})
}

func (e *Endpoint) handler(v Version) Handler {
	if v != V1 && v != V2 {
		return nil
	}
	if r := e.handlers[v].Load(); r != nil {
		return r.h
	}
	return nil
}

// Close stops the endpoint: closes the sockets, fails pending requests with
// ErrClosed and waits for every goroutine. It is idempotent and returns the
// first socket close error.
func (e *Endpoint) Close() error {
	e.closeOnce.Do(func() {
		close(e.done)
		for _, s := range e.socks {
			if err := s.conn.Close(); err != nil && e.closeErr == nil {
				e.closeErr = fmt.Errorf("gtpc: close %v: %w", s.addr, err)
			}
		}
		e.readers.Wait()
		for _, q := range e.queues {
			close(q)
		}
		e.workers.Wait()
		e.bg.Wait()
	})
	return e.closeErr
}

func (e *Endpoint) readLoop(s *socket) {
	defer e.readers.Done()
	buf := make([]byte, 65536) // full-size datagrams (gtp.md #6)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-e.done:
				return
			default:
			}
			e.cfg.Logger.Warn("gtpc: read", "addr", s.addr, "err", err)
			continue
		}
		e.receive(s, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), buf[:n])
	}
}

// receive classifies one datagram: responses are matched to our pending
// requests here, requests are queued to a worker.
func (e *Endpoint) receive(s *socket, from netip.AddrPort, b []byte) {
	defer func() {
		if r := recover(); r != nil {
			e.m.panics.Inc()
			e.cfg.Logger.Error("gtpc: panic in reader", "peer", from, "panic", r)
		}
	}()
	h, err := ParseHeader(b)
	if err != nil {
		e.m.malformed.Inc()
		if len(b) >= 8 && b[0]>>5 > 2 {
			// TS 29.274 §7.7.2: a version we do not speak gets a Version
			// Not Supported Indication with the highest we do (2), the
			// sequence number read where GTPv2 keeps it.
			e.write(s, from, []byte{0x40, msgVersionUnsupported, 0, 4, b[4], b[5], b[6], 0})
		}
		return
	}
	e.m.received.WithLabelValues(h.Version.String()).Inc()
	e.touchPeer(h.Version, from, s)
	if isResponse(h.Version, h.Type) {
		e.deliver(h, from, b[:h.Len])
		return
	}
	if h.Type == msgVersionUnsupported {
		e.m.dropped.WithLabelValues("version_not_supported").Inc()
		return
	}
	msg := make([]byte, h.Len)
	copy(msg, b)
	q := e.queues[route(from, h)%uint32(len(e.queues))]
	select {
	case q <- job{s: s, peer: from, h: h, b: msg}:
	default:
		e.m.dropped.WithLabelValues("queue_full").Inc()
	}
}

// route keeps the messages of one session (peer, TEID) or of one
// transaction (peer, sequence) on one worker, in order (gtp.md #7).
func route(from netip.AddrPort, h Header) uint32 {
	a := from.Addr().As16()
	x := uint32(2166136261)
	for _, c := range a[12:] {
		x = (x ^ uint32(c)) * 16777619
	}
	k := h.TEID
	if k == 0 {
		k = h.Seq
	}
	x ^= k
	x *= 0x9e3779b1
	return x ^ x>>15
}

func (e *Endpoint) worker(q chan job) {
	defer e.workers.Done()
	for j := range q {
		e.serve(j)
	}
}

func (e *Endpoint) serve(j job) {
	key := cacheKey{v: j.h.Version, typ: j.h.Type, local: uint8(j.s.idx), seq: j.h.Seq, peer: j.peer}
	defer func() {
		if r := recover(); r != nil {
			e.m.panics.Inc()
			e.cfg.Logger.Error("gtpc: panic in handler", "peer", j.peer, "type", j.h.Type, "panic", r)
			e.cacheMu.Lock()
			if ent := e.cache[key]; ent != nil && ent.resp == nil {
				delete(e.cache, key)
			}
			e.cacheMu.Unlock()
		}
	}()
	// Duplicate detection (TS 29.274 §7.6, TS 29.060 §7.6): a request with
	// the same peer, sequence number and type gets the original response
	// again, octet for octet; one still being handled is dropped.
	now := e.cfg.Now().UnixNano()
	e.cacheMu.Lock()
	if ent, ok := e.cache[key]; ok && ent.expires > now {
		resp := ent.resp
		e.cacheMu.Unlock()
		e.m.duplicates.WithLabelValues(j.h.Version.String()).Inc()
		if resp != nil {
			e.write(j.s, j.peer, resp)
		}
		return
	}
	ent := e.cacheInsert(key, now+int64(e.cfg.ResponseTTL))
	e.cacheMu.Unlock()

	resp := e.handle(j)
	e.cacheMu.Lock()
	if resp == nil {
		if e.cache[key] == ent {
			delete(e.cache, key)
		}
	} else {
		ent.resp = resp
	}
	e.cacheMu.Unlock()
	if resp != nil {
		e.write(j.s, j.peer, resp)
	}
}

// cacheInsert adds an in-progress entry. When the cache is full the oldest
// entry goes (it is the closest to expiry; retransmissions come within the
// peer's T3×N3), so a burst above MaxCachedResponses per ResponseTTL costs
// the oldest replays, never the newest. Called with cacheMu held.
func (e *Endpoint) cacheInsert(key cacheKey, expires int64) *cacheEntry {
	max := uint64(e.cfg.MaxCachedResponses)
	ent := &cacheEntry{expires: expires, slot: e.cacheN}
	if e.cacheN >= max {
		old := e.cacheRing[e.cacheN%max]
		if o, ok := e.cache[old]; ok && o.slot == e.cacheN-max {
			delete(e.cache, old)
			e.m.dropped.WithLabelValues("cache_evicted").Inc()
		}
		e.cacheRing[e.cacheN%max] = key
	} else {
		e.cacheRing = append(e.cacheRing, key)
	}
	e.cacheN++
	e.cache[key] = ent
	return ent
}

func (e *Endpoint) handle(j job) []byte {
	v := j.h.Version
	if j.h.Type == msgEchoRequest {
		// TS 29.274 §7.1.1 carries Recovery in the Echo Request as well.
		if rc, ok := recoveryOf(v, j.b, j.h); ok {
			e.ObserveRecovery(v, j.peer.Addr(), rc)
		}
		return encodeEcho(v, msgEchoResponse, j.h.Seq, e.restart)
	}
	h := e.handler(v)
	if h == nil {
		e.m.dropped.WithLabelValues("no_handler").Inc()
		return nil
	}
	start := time.Now()
	msg, err := h.HandleRequest(&Request{Header: j.h, Raw: j.b, Peer: j.peer, Local: j.s.addr})
	e.m.handled.WithLabelValues(v.String()).Observe(time.Since(start).Seconds())
	if err != nil {
		e.m.handlerErrors.WithLabelValues(v.String()).Inc()
		e.cfg.Logger.Warn("gtpc: handler", "peer", j.peer, "version", v, "type", j.h.Type, "err", err)
		return nil
	}
	if msg == nil {
		return nil
	}
	out := make([]byte, msg.MarshalLen())
	if err := msg.MarshalTo(out); err != nil {
		e.m.handlerErrors.WithLabelValues(v.String()).Inc()
		e.cfg.Logger.Warn("gtpc: encode response", "peer", j.peer, "type", j.h.Type, "err", err)
		return nil
	}
	return out
}

func (e *Endpoint) write(s *socket, to netip.AddrPort, b []byte) {
	if _, err := s.conn.WriteToUDPAddrPort(b, to); err != nil {
		e.m.sendErrors.Inc()
		select {
		case <-e.done:
		default:
			e.cfg.Logger.Warn("gtpc: write", "to", to, "err", err)
		}
	}
}

func (e *Endpoint) socketFor(local netip.Addr) *socket {
	for _, s := range e.socks {
		if s.addr.Addr() == local {
			return s
		}
	}
	return e.socks[0]
}

// deliver hands a response to the Request waiting for it.
func (e *Endpoint) deliver(h Header, from netip.AddrPort, b []byte) {
	k := pendKey{v: h.Version, seq: h.Seq, peer: from.Addr()}
	e.pendMu.Lock()
	ch, ok := e.pending[k]
	if ok {
		delete(e.pending, k)
	}
	e.pendMu.Unlock()
	if !ok {
		e.m.dropped.WithLabelValues("unexpected_response").Inc()
		return
	}
	ch <- append([]byte(nil), b...) // cap 1, sole sender
}

// NextSeq allocates a sequence number for a request of ours: 16 bits in
// GTPv1, 23 bits in GTPv2 (the MSB of the 24 marks command-triggered
// requests, TS 29.274 §7.6).
func (e *Endpoint) nextSeq(v Version) uint32 {
	if v == V1 {
		return e.seq1.Add(1) & 0xffff
	}
	return e.seq2.Add(1) & 0x7fffff
}

// Request sends a request of ours to peer from our address local (zero:
// the first address), retransmitting it unchanged every T3 up to N3 times
// (TS 29.274 §7.6, TS 29.060 §7.6), and returns the raw response. encode
// builds the message with the given sequence number. It returns ErrTimeout,
// ErrClosed or the context's error.
func (e *Endpoint) Request(ctx context.Context, v Version, local netip.Addr, peer netip.AddrPort,
	encode func(seq uint32) ([]byte, error)) ([]byte, error) {
	select {
	case <-e.done:
		return nil, ErrClosed
	default:
	}
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	s := e.socketFor(local)
	ch := make(chan []byte, 1)
	var k pendKey
	e.pendMu.Lock()
	for {
		k = pendKey{v: v, seq: e.nextSeq(v), peer: peer.Addr()}
		if _, busy := e.pending[k]; !busy {
			break
		}
	}
	e.pending[k] = ch
	e.pendMu.Unlock()
	defer func() {
		e.pendMu.Lock()
		if e.pending[k] == ch {
			delete(e.pending, k)
		}
		e.pendMu.Unlock()
	}()
	b, err := encode(k.seq)
	if err != nil {
		return nil, fmt.Errorf("gtpc: encode request to %v: %w", peer, err)
	}
	t := time.NewTimer(e.cfg.T3)
	defer t.Stop()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			e.m.retransmissions.WithLabelValues(v.String()).Inc()
		}
		e.write(s, peer, b)
		select {
		case resp := <-ch:
			return resp, nil
		case <-t.C:
			if attempt >= e.cfg.N3 {
				e.m.timeouts.WithLabelValues(v.String()).Inc()
				return nil, fmt.Errorf("gtpc: request type %d seq %d to %v: %w", b[1], k.seq, peer, ErrTimeout)
			}
			t.Reset(e.cfg.T3)
		case <-ctx.Done():
			return nil, fmt.Errorf("gtpc: request to %v: %w", peer, ctx.Err())
		case <-e.done:
			return nil, ErrClosed
		}
	}
}

// janitor expires cached responses and idle peers.
func (e *Endpoint) janitor() {
	defer e.bg.Done()
	every := e.cfg.ResponseTTL / 4
	if every < 10*time.Millisecond {
		every = 10 * time.Millisecond
	}
	if every > 5*time.Second {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-e.done:
			return
		case <-t.C:
		}
		now := e.cfg.Now().UnixNano()
		e.cacheMu.Lock()
		for k, ent := range e.cache {
			if ent.expires <= now && ent.resp != nil {
				delete(e.cache, k)
			}
		}
		n := len(e.cache)
		e.cacheMu.Unlock()
		e.m.cached.Set(float64(n))
		idle := now - int64(e.cfg.PeerIdle)
		e.peersMu.Lock()
		for k, p := range e.peers {
			if p.lastSeen < idle && !p.echoing {
				delete(e.peers, k)
			}
		}
		e.m.peers.Set(float64(len(e.peers)))
		e.peersMu.Unlock()
	}
}
