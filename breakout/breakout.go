package breakout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

// Breakout is one node's GTP-U user plane and local egress. It implements
// Tunnels. Create it with New, stop it with Close.
type Breakout struct {
	cfg    Config
	local  netip.Addr
	tab    table
	egress Egress
	ns     netns.NsHandle
	conns  []*net.UDPConn
	ctl    *net.UDPConn // worker 0's socket, for End Markers sent by Install
	ctlMu  sync.Mutex   // guards ctlBuf
	ctlBuf [gtpuHeaderLen]byte

	errInd *rate.Limiter
	stats  []*stats // two per worker: uplink, downlink
	mx     *metrics

	closed    atomic.Bool
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var _ Tunnels = (*Breakout)(nil)

// New binds the GTP-U endpoint, opens the egress (the tun driver unless
// Config.NewEgress is set) and starts the workers. Without root or
// CAP_NET_ADMIN the tun driver fails with an error wrapping ErrNeedNetAdmin.
func New(cfg Config) (_ *Breakout, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b := &Breakout{cfg: cfg, local: cfg.Listen.Addr(), ns: netns.None()} // NsHandle 0 would be fd 0
	b.errInd = rate.NewLimiter(cfg.ErrorIndicationRate, cfg.ErrorIndicationBurst)
	defer func() {
		if err != nil {
			b.teardown()
		}
	}()
	if cfg.NetNS != "" {
		ns, err := netns.GetFromPath(cfg.NetNS)
		if err != nil {
			return nil, fmt.Errorf("breakout: netns %s: %w", cfg.NetNS, err)
		}
		b.ns = ns
	}
	err = inNetNS(b.ns, func() error {
		if err := b.listen(); err != nil {
			return err
		}
		if cfg.NewEgress != nil {
			e, err := cfg.NewEgress(cfg.Workers)
			if err != nil {
				return fmt.Errorf("breakout: egress: %w", err)
			}
			b.egress = e
			return nil
		}
		e, err := openTUN(&b.cfg, cfg.Workers, b.ns)
		if err != nil {
			return err
		}
		b.egress = e
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The statistics exist before the metrics that read them.
	for i := 0; i < cfg.Workers; i++ {
		b.stats = append(b.stats, new(stats), new(stats))
	}
	if b.mx, err = newMetrics(b); err != nil {
		return nil, err
	}
	for i := 0; i < cfg.Workers; i++ {
		w, err := b.newWorker(i, b.stats[2*i], b.stats[2*i+1])
		if err != nil {
			return nil, err
		}
		b.wg.Add(2)
		go w.uplink()
		go w.downlink()
	}
	cfg.Logger.Info("breakout: started", "node", cfg.Name, "listen", cfg.Listen, "workers", cfg.Workers,
		"tun", cfg.TUNName, "pools", cfg.Pools)
	return b, nil
}

// listen binds one SO_REUSEPORT socket per worker. A probe bind without
// SO_REUSEPORT first makes sure nobody else (another node's breakout, in
// this or another process) already serves the address: the kernel would
// otherwise share the port with them silently.
func (b *Breakout) listen() error {
	network := "udp4"
	if b.local.Is6() {
		network = "udp6"
	}
	addr := b.cfg.Listen.String()
	probe, err := net.ListenPacket(network, addr)
	if err != nil {
		return fmt.Errorf("breakout: listen %s: %w", addr, err)
	}
	probe.Close()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			s := int(fd)
			serr = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			if serr != nil {
				return
			}
			// Buffers absorb bursts between two recvmmsg calls; FORCE
			// works as root, the plain one is the fallback.
			sz := b.cfg.SocketBuffer
			if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sz) != nil {
				_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, sz)
			}
			if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sz) != nil {
				_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF, sz)
			}
			// Outer packets larger than the path MTU are fragmented by the
			// kernel rather than refused (TS 29.281 §4.4.2.0 leaves outer
			// fragmentation to IP).
			if b.local.Is4() {
				_ = unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
			} else {
				_ = unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	for i := 0; i < b.cfg.Workers; i++ {
		pc, err := lc.ListenPacket(context.Background(), network, addr)
		if err != nil {
			return fmt.Errorf("breakout: listen %s (worker %d): %w", addr, i, err)
		}
		b.conns = append(b.conns, pc.(*net.UDPConn))
	}
	b.ctl = b.conns[0]
	return nil
}

// Close stops the workers, waits for them, closes the sockets and tears
// the egress down (TUN device, routes, nftables table). It is idempotent
// and returns the first error.
func (b *Breakout) Close() error {
	b.closeOnce.Do(func() {
		b.closeErr = b.teardown()
		b.cfg.Logger.Info("breakout: stopped", "node", b.cfg.Name)
	})
	return b.closeErr
}

func (b *Breakout) teardown() error {
	b.closed.Store(true)
	var errs []error
	for _, c := range b.conns {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("breakout: close socket: %w", err))
		}
	}
	if b.egress != nil {
		if err := b.egress.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	b.wg.Wait()
	if b.mx != nil {
		b.mx.unregister()
	}
	if b.ns.IsOpen() {
		b.ns.Close()
	}
	return errors.Join(errs...)
}

// LocalAddr returns the GTP-U endpoint address.
func (b *Breakout) LocalAddr() netip.AddrPort { return b.cfg.Listen }

// Install adds t or replaces the tunnel with the same LocalTEID. If the
// replacement moves the downlink to another peer or peer TEID, an End
// Marker is sent on the old path (TS 29.281 §7.3.2; TS 23.401 §5.5.2).
func (b *Breakout) Install(t Tunnel) error {
	if b.closed.Load() {
		return ErrClosed
	}
	t.Peer = netip.AddrPortFrom(t.Peer.Addr().Unmap(), t.Peer.Port())
	t.UE = t.UE.Unmap()
	switch {
	case t.LocalTEID == 0:
		return fmt.Errorf("breakout: install: local TEID 0 is reserved (TS 29.281 §5.1): %w", ErrBadTunnel)
	case !t.Peer.IsValid() || t.Peer.Port() == 0 || t.Peer.Addr().IsUnspecified():
		return fmt.Errorf("breakout: install TEID %#x: peer %v: %w", uint32(t.LocalTEID), t.Peer, ErrBadTunnel)
	case t.Peer.Addr().Is4() != b.local.Is4():
		return fmt.Errorf("breakout: install TEID %#x: peer %v is not of the family of %v: %w", uint32(t.LocalTEID), t.Peer, b.local, ErrBadTunnel)
	case !t.UE.IsValid() || t.UE.IsUnspecified():
		return fmt.Errorf("breakout: install TEID %#x: UE %v: %w", uint32(t.LocalTEID), t.UE, ErrBadTunnel)
	}
	e := &tunnelEntry{t: t, peer: makeSockaddr(t.Peer), peerIP: t.Peer.Addr()}
	old, err := b.tab.install(e)
	if err != nil {
		return err
	}
	if old != nil && (old.t.Peer != t.Peer || old.t.PeerTEID != t.PeerTEID) {
		b.sendEndMarker(old.t.Peer, old.t.PeerTEID)
	}
	return nil
}

func (b *Breakout) sendEndMarker(to netip.AddrPort, teid TEID) {
	b.ctlMu.Lock()
	defer b.ctlMu.Unlock()
	n := putEndMarker(b.ctlBuf[:], teid)
	if _, err := b.ctl.WriteToUDPAddrPort(b.ctlBuf[:n], to); err != nil {
		b.cfg.Logger.Warn("breakout: send End Marker", "node", b.cfg.Name, "peer", to, "teid", uint32(teid), "err", err)
	}
}

// Remove deletes the tunnel and returns its final counters.
func (b *Breakout) Remove(local TEID) (Counters, error) {
	e := b.tab.remove(local)
	if e == nil {
		return Counters{}, fmt.Errorf("breakout: remove TEID %#x: %w", uint32(local), ErrUnknownTEID)
	}
	return e.ctr.snapshot(), nil
}

// Counters returns the current counters of a tunnel: inner IP octets and
// packets (the T-PDUs' payload, TS 29.281 §5.1), as usage records count
// them.
func (b *Breakout) Counters(local TEID) (Counters, bool) {
	e := b.tab.byTEID(local)
	if e == nil {
		return Counters{}, false
	}
	return e.ctr.snapshot(), true
}

// Range calls f with every installed tunnel and its counters, until f
// returns false (for periodic usage records). The view is consistent per
// tunnel, not across tunnels.
func (b *Breakout) Range(f func(Tunnel, Counters) bool) {
	b.tab.each(func(e *tunnelEntry) bool { return f(e.t, e.ctr.snapshot()) })
}

// Len returns the number of installed tunnels.
func (b *Breakout) Len() int { return b.tab.len() }

// Stats are node-wide totals since New.
type Stats struct {
	PacketsUp, BytesUp      uint64 // T-PDUs decapsulated to the egress
	PacketsDown, BytesDown  uint64 // packets encapsulated to peers
	EchoRequests            uint64 // Echo Requests answered (§7.2.1)
	EchoResponses           uint64 // Echo Responses received (§7.2.2)
	ErrorIndicationsSent    uint64 // §7.3.1, after rate limiting
	ErrorIndicationsLimited uint64 // Error Indications suppressed by the rate limit
	ErrorIndicationsRecv    uint64
	EndMarkers              uint64            // End Markers received for known tunnels (§7.3.2)
	ExtHeaderNotifications  uint64            // Supported Extension Headers Notifications received (§7.3.3)
	Dropped                 map[string]uint64 // by reason
}

// Stats returns the node-wide totals. It allocates; not for the data path.
func (b *Breakout) Stats() Stats {
	var s Stats
	s.Dropped = make(map[string]uint64)
	for _, st := range b.stats {
		s.PacketsUp += st.c[statUpPackets].Load()
		s.BytesUp += st.c[statUpBytes].Load()
		s.PacketsDown += st.c[statDownPackets].Load()
		s.BytesDown += st.c[statDownBytes].Load()
		s.EchoRequests += st.c[statEchoRequests].Load()
		s.EchoResponses += st.c[statEchoResponses].Load()
		s.ErrorIndicationsSent += st.c[statErrIndSent].Load()
		s.ErrorIndicationsLimited += st.c[statErrIndLimited].Load()
		s.ErrorIndicationsRecv += st.c[statErrIndRecv].Load()
		s.EndMarkers += st.c[statEndMarkers].Load()
		s.ExtHeaderNotifications += st.c[statExtHdrNtf].Load()
		for r := dropReason(1); r < numDropReasons; r++ {
			if v := st.c[statDrop0+int(r)].Load(); v > 0 {
				s.Dropped[r.String()] += v
			}
		}
	}
	return s
}

// logger for rare events.
func (b *Breakout) log() *slog.Logger { return b.cfg.Logger }
