package hss

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

// Sentinel errors.
var (
	// ErrClosed is returned by calls on a closed Server.
	ErrClosed = errors.New("hss: server closed")
	// ErrNoPeer is returned by CancelLocation and InsertSubscriberData when
	// this node has no Diameter connection to the serving MME (neither by
	// Origin-Host nor by realm): the federation should try another node.
	ErrNoPeer = errors.New("hss: no connection to the serving MME")
	// ErrNotRegistered is returned when the subscriber has no serving MME.
	ErrNotRegistered = errors.New("hss: subscriber not registered")
	// ErrTimeout is returned when an HSS-initiated request got no answer
	// after all retransmissions.
	ErrTimeout = errors.New("hss: no answer")
	// errPeerClosed: the connection went away while a request was queued.
	errPeerClosed = errors.New("hss: peer connection closed")
)

const (
	servingStripes    = 64
	maxHintsPerStripe = 4096 // ≤ 262144 generation hints, a few MB
)

// Server is one node's S6a HSS: a Diameter server on TCP (RFC 6733) that
// answers AIR, ULR, PUR and NOR (TS 29.272 §5.2) and sends CLR and IDR.
// It owns every goroutine it starts; Close stops and waits for them.
type Server struct {
	cfg Config
	log *slog.Logger
	met *metrics

	ctx    context.Context // cancelled by Close; parent of handler contexts
	cancel context.CancelFunc

	sem     chan struct{} // MaxInFlight slots
	outSem  chan struct{} // MaxOutbound slots
	stateID uint32        // Origin-State-Id (RFC 6733 §8.16)
	hbh     atomic.Uint32 // Hop-by-Hop ids of our requests (RFC 6733 §3)
	e2e     atomic.Uint32 // End-to-End ids (RFC 6733 §3)
	sidHigh uint32        // Session-Id high part (RFC 6733 §8.8)
	sidLow  atomic.Uint32
	connSeq atomic.Uint64 // orders connections: the newest to a host wins
	epochMu sync.Mutex
	epoch   atomic.Pointer[epoch] // shared request deadline (requestContext)

	lns   []net.Listener
	addrs []netip.AddrPort

	mu     sync.Mutex
	closed bool
	peers  map[*peer]struct{} // every connection
	routes map[string]*peer   // MME Origin-Host (lower case) → connection its requests came over

	servingLocks [servingStripes]sync.Mutex              // per-IMSI stripes for the serving-row CAS
	servingHints [servingStripes]map[topology.IMSI]int64 // last generation written, guarded by servingLocks

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg, binds every Listen address and starts serving.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("hss: config: %w", err)
	}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	now := cfg.Clock.Now()
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "hss", "origin_host", cfg.OriginHost),
		met:     met,
		sem:     make(chan struct{}, cfg.MaxInFlight),
		outSem:  make(chan struct{}, cfg.MaxOutbound),
		stateID: uint32(now.Unix()),
		sidHigh: uint32(now.Unix()),
		peers:   make(map[*peer]struct{}),
		routes:  make(map[string]*peer),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.hbh.Store(binary.BigEndian.Uint32(rnd[0:4]))
	// RFC 6733 §3: high 12 bits from the clock, low 20 bits random.
	s.e2e.Store(uint32(now.Unix())<<20 | binary.BigEndian.Uint32(rnd[4:8])&0xfffff)
	var lc net.ListenConfig
	for _, ap := range cfg.Listen {
		ln, err := lc.Listen(s.ctx, "tcp", ap.String())
		if err != nil {
			for _, l := range s.lns {
				l.Close()
			}
			s.cancel()
			return nil, fmt.Errorf("hss: listen %v: %w", ap, err)
		}
		s.lns = append(s.lns, ln)
		s.addrs = append(s.addrs, ln.Addr().(*net.TCPAddr).AddrPort())
	}
	for _, ln := range s.lns {
		s.wg.Add(1)
		go s.acceptLoop(ln)
	}
	s.log.Info("serving S6a", "addrs", s.addrs, "region", cfg.Region)
	return s, nil
}

// Addrs returns the bound listen addresses, in Config.Listen order.
func (s *Server) Addrs() []netip.AddrPort { return slices.Clone(s.addrs) }

// ConnectedPeers returns the Origin-Hosts of the peers whose connection is
// in the Open state (after CER/CEA), sorted, without duplicates.
func (s *Server) ConnectedPeers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for p := range s.peers {
		if h, ok := p.openHost(); ok {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Reaches reports whether this node has a connection over which an
// HSS-initiated request to MME host of realm would go (the one CancelLocation
// uses): a peer with that CER Origin-Host, the connection the MME's ULRs
// came over (through a DEA), or a peer of its realm. The federation can use
// it to pick the node that re-homes a device; ConnectedPeers only lists
// direct peers.
func (s *Server) Reaches(host, realm string) bool { return s.route(host, realm) != nil }

// Close disconnects every peer (DPR with Disconnect-Cause REBOOTING,
// RFC 6733 §5.4, then the connection is closed once the DPA arrived or after
// a second), stops the listeners and waits for every goroutine. It is
// idempotent and returns the first error.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		peers := make([]*peer, 0, len(s.peers))
		for p := range s.peers {
			peers = append(peers, p)
		}
		s.mu.Unlock()
		var errs []error
		for _, ln := range s.lns {
			if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
		for _, p := range peers {
			p.disconnect()
		}
		// Peers that do not answer the DPR in time are cut.
		stop := time.AfterFunc(time.Second, func() {
			for _, p := range peers {
				p.abort()
			}
		})
		s.cancel()
		if e := s.epoch.Load(); e != nil {
			e.cancel()
		}
		s.wg.Wait()
		stop.Stop()
		s.closeErr = errors.Join(errs...)
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("hss: close: %w", s.closeErr)
		}
		s.log.Info("stopped")
	})
	return s.closeErr
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Warn("accept failed", "err", err)
			// Back off briefly on e.g. EMFILE, unless closing.
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		p := newPeer(s, nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.peers[p] = struct{}{}
		s.wg.Add(2)
		s.mu.Unlock()
		go p.readLoop()
		go p.writeLoop()
	}
}

// remove forgets p (its connection is gone).
func (s *Server) remove(p *peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.peers, p)
	for h, q := range s.routes {
		if q == p {
			delete(s.routes, h)
		}
	}
}

// learnRoute remembers that requests from MME host arrive over p, for
// HSS-initiated requests to an MME behind a DEA/DRA (notes/diameter.md §1.4).
func (s *Server) learnRoute(host string, p *peer) {
	host = strings.ToLower(host)
	s.mu.Lock()
	if s.routes[host] != p {
		s.routes[host] = p
	}
	s.mu.Unlock()
}

// route finds the connection to reach MME host of realm: a peer whose CER
// Origin-Host is host (the newest), else the connection its requests came
// over, else a peer of the realm.
func (s *Server) route(host, realm string) *peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best, byRealm *peer
	for p := range s.peers {
		h, r, ok := p.identity()
		if !ok {
			continue
		}
		if strings.EqualFold(h, host) && (best == nil || p.seq > best.seq) {
			best = p
		}
		if realm != "" && strings.EqualFold(r, realm) && (byRealm == nil || p.seq > byRealm.seq) {
			byRealm = p
		}
	}
	if best != nil {
		return best
	}
	if p := s.routes[strings.ToLower(host)]; p != nil {
		if _, _, ok := p.identity(); ok {
			return p
		}
	}
	return byRealm
}

func (s *Server) allowed(host, realm string, src netip.Addr) bool {
	for _, r := range s.cfg.Peers {
		if r.match(host, realm, src) {
			return true
		}
	}
	return false
}

// newSessionID returns a Session-Id "<DiameterIdentity>;<high 32>;<low 32>"
// (RFC 6733 §8.8).
func (s *Server) newSessionID() string {
	return fmt.Sprintf("%s;%d;%d", s.cfg.OriginHost, s.sidHigh, s.sidLow.Add(1))
}

func (s *Server) nextHopByHop() uint32 {
	for {
		if v := s.hbh.Add(1); v != 0 {
			return v
		}
	}
}
