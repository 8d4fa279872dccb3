// Package faultnet injects network faults between federation nodes running
// on one machine: partitions, UDP packet loss and TCP retransmit penalties,
// by wrapping the real transports — memberlist's NodeAwareTransport and
// raft's StreamLayer — instead of replacing them (memberlist's MockNetwork
// cannot lose, delay or partition, notes/federation.md §1.6). It exists
// because `tc netem` is not available here.
//
// A node is identified by the IP it binds (one 127.0.40.x address per
// node). Faults are applied by the sender, so they are symmetric as long
// as every node of a test uses the same Network. Only tests and test
// harnesses import it (e2e, federation tests).
package faultnet

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// ErrPartitioned is returned by dials across a partition and by I/O on a
// connection a partition cut.
var ErrPartitioned = errors.New("faultnet: partitioned")

// RTOPenalty is the delay a "lost" TCP segment costs: a retransmission
// timeout (Linux minimum 200 ms), as in the notes' emulator (§1.3).
const RTOPenalty = 200 * time.Millisecond

// Network is the shared fault state of the nodes of one test. The zero
// value is not usable; call New.
type Network struct {
	mu      sync.Mutex // guards following fields
	rng     *rand.Rand
	loss    float64
	rtt     func(a, b netip.Addr) time.Duration
	group   map[netip.Addr]int
	conns   map[*conn]struct{}
	dropped uint64
	sent    uint64
}

// New returns a fault-free network; seed makes the loss pattern
// reproducible.
func New(seed uint64) *Network {
	return &Network{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), group: map[netip.Addr]int{}, conns: map[*conn]struct{}{}}
}

// SetLoss sets the probability that a gossip UDP packet is dropped and that
// a TCP dial pays an RTOPenalty.
func (n *Network) SetLoss(p float64) {
	n.mu.Lock()
	n.loss = p
	n.mu.Unlock()
}

// SetRTT sets the emulated round-trip time between two hosts (nil: none).
// Gossip packets are delivered after RTT/2; a TCP dial pays one RTT (the
// handshake); raft connections deliver every write RTT/2 later, in order,
// without blocking the writer (notes/federation.md §1.6). Set it before
// the nodes start: connections keep the delay they were opened with.
func (n *Network) SetRTT(rtt func(a, b netip.Addr) time.Duration) {
	n.mu.Lock()
	n.rtt = rtt
	n.mu.Unlock()
}

func (n *Network) delay(a, b netip.Addr) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rtt == nil {
		return 0
	}
	return n.rtt(a.Unmap(), b.Unmap())
}

// Stats returns how many gossip packets were sent and dropped.
func (n *Network) Stats() (sent, dropped uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sent, n.dropped
}

// Partition splits the network: hosts listed in different groups cannot
// reach each other; unlisted hosts form one more group together. Existing
// raft connections crossing the cut are closed.
func (n *Network) Partition(groups ...[]netip.Addr) {
	n.mu.Lock()
	n.group = map[netip.Addr]int{}
	for i, g := range groups {
		for _, a := range g {
			n.group[a] = i + 1
		}
	}
	var cut []*conn
	for c := range n.conns {
		if n.blockedLocked(c.self, c.peer) {
			cut = append(cut, c)
		}
	}
	n.mu.Unlock()
	for _, c := range cut {
		c.Close()
	}
}

// Heal removes every partition.
func (n *Network) Heal() { n.Partition() }

func (n *Network) blocked(a, b netip.Addr) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.blockedLocked(a, b)
}

func (n *Network) blockedLocked(a, b netip.Addr) bool {
	return n.group[a.Unmap()] != n.group[b.Unmap()]
}

func (n *Network) lose() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.loss > 0 && n.rng.Float64() < n.loss
}

func hostOf(addr string) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("faultnet: address %q: %w", addr, err)
	}
	return ap.Addr().Unmap(), nil
}

// Memberlist returns a membership Config.WrapTransport for the node bound
// to self.
func (n *Network) Memberlist(self netip.Addr) func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	return func(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
		return &mlTransport{NodeAwareTransport: t, net: n, self: self}
	}
}

type mlTransport struct {
	memberlist.NodeAwareTransport
	net  *Network
	self netip.Addr
}

func (t *mlTransport) dropPacket(addr string) bool {
	h, err := hostOf(addr)
	if err != nil {
		return false
	}
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	t.net.sent++
	if t.net.blockedLocked(t.self, h) || (t.net.loss > 0 && t.net.rng.Float64() < t.net.loss) {
		t.net.dropped++
		return true
	}
	return false
}

func (t *mlTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.dropPacket(addr) {
		return time.Now(), nil // lost on the wire: UDP reports nothing
	}
	if d := t.oneWay(addr); d > 0 {
		buf := append([]byte(nil), b...)
		time.AfterFunc(d, func() { t.NodeAwareTransport.WriteTo(buf, addr) })
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteTo(b, addr)
}

func (t *mlTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.dropPacket(a.Addr) {
		return time.Now(), nil
	}
	if d := t.oneWay(a.Addr); d > 0 {
		buf := append([]byte(nil), b...)
		time.AfterFunc(d, func() { t.NodeAwareTransport.WriteToAddress(buf, a) })
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *mlTransport) oneWay(addr string) time.Duration {
	h, err := hostOf(addr)
	if err != nil {
		return 0
	}
	return t.net.delay(t.self, h) / 2
}

func (t *mlTransport) checkDial(addr string) error {
	h, err := hostOf(addr)
	if err != nil {
		return err
	}
	if t.net.blocked(t.self, h) {
		return fmt.Errorf("dial %s: %w", addr, ErrPartitioned)
	}
	if t.net.lose() {
		time.Sleep(RTOPenalty) // a lost SYN or segment costs an RTO
	}
	time.Sleep(t.net.delay(t.self, h)) // the handshake
	return nil
}

func (t *mlTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if err := t.checkDial(addr); err != nil {
		return nil, err
	}
	return t.NodeAwareTransport.DialTimeout(addr, timeout)
}

func (t *mlTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if err := t.checkDial(a.Addr); err != nil {
		return nil, err
	}
	return t.NodeAwareTransport.DialAddressTimeout(a, timeout)
}

// Listen returns a raft.StreamLayer on self:port whose dials originate
// from self (so the peer can tell who is calling) and whose connections a
// Partition cuts.
func (n *Network) Listen(self netip.Addr, port int) (raft.StreamLayer, error) {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(self, uint16(port)).String())
	if err != nil {
		return nil, fmt.Errorf("faultnet: listen: %w", err)
	}
	return &streamLayer{Listener: ln, net: n, self: self}, nil
}

type streamLayer struct {
	net.Listener
	net  *Network
	self netip.Addr
}

func (s *streamLayer) Accept() (net.Conn, error) {
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			return nil, err
		}
		peer, _ := hostOf(c.RemoteAddr().String())
		if s.net.blocked(s.self, peer) {
			c.Close()
			continue
		}
		return s.net.track(c, s.self, peer), nil
	}
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	peer, err := hostOf(string(addr))
	if err != nil {
		return nil, err
	}
	if s.net.blocked(s.self, peer) {
		return nil, fmt.Errorf("dial %s: %w", addr, ErrPartitioned)
	}
	time.Sleep(s.net.delay(s.self, peer)) // the handshake
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: s.self.AsSlice()}}
	c, err := d.Dial("tcp", string(addr))
	if err != nil {
		return nil, err
	}
	return s.net.track(c, s.self, peer), nil
}

type conn struct {
	net.Conn
	net        *Network
	self, peer netip.Addr
	once       sync.Once
	// With an emulated RTT, writes go through a delay line: a queue
	// drained by one goroutine (owned by the conn, stopped by Close).
	oneWay  time.Duration
	mu      sync.Mutex // guards following fields
	queue   []delayed
	werr    error
	wake    chan struct{}
	closed  chan struct{}
	drained chan struct{}
}

type delayed struct {
	due time.Time
	b   []byte
}

func (n *Network) track(c net.Conn, self, peer netip.Addr) *conn {
	tc := &conn{Conn: c, net: n, self: self, peer: peer, oneWay: n.delay(self, peer) / 2}
	if tc.oneWay > 0 {
		tc.wake, tc.closed, tc.drained = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go tc.deliver()
	}
	n.mu.Lock()
	n.conns[tc] = struct{}{}
	n.mu.Unlock()
	return tc
}

// deliver writes queued data to the socket when it is due, in order.
func (c *conn) deliver() {
	defer close(c.drained)
	for {
		c.mu.Lock()
		var next *delayed
		if len(c.queue) > 0 {
			next = &c.queue[0]
		}
		c.mu.Unlock()
		if next == nil {
			select {
			case <-c.wake:
				continue
			case <-c.closed:
				return
			}
		}
		if d := time.Until(next.due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-c.closed:
				t.Stop()
				return
			}
		}
		_, err := c.Conn.Write(next.b)
		c.mu.Lock()
		c.queue = c.queue[1:]
		if err != nil && c.werr == nil {
			c.werr = err
		}
		c.mu.Unlock()
	}
}

func (c *conn) Read(b []byte) (int, error) {
	if c.net.blocked(c.self, c.peer) {
		c.Close()
		return 0, ErrPartitioned
	}
	return c.Conn.Read(b)
}

func (c *conn) Write(b []byte) (int, error) {
	if c.net.blocked(c.self, c.peer) {
		c.Close()
		return 0, ErrPartitioned
	}
	if c.oneWay <= 0 {
		return c.Conn.Write(b)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	c.queue = append(c.queue, delayed{time.Now().Add(c.oneWay), append([]byte(nil), b...)})
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return len(b), nil
}

func (c *conn) Close() error {
	c.once.Do(func() {
		c.net.mu.Lock()
		delete(c.net.conns, c)
		c.net.mu.Unlock()
		if c.closed != nil {
			close(c.closed)
		}
	})
	err := c.Conn.Close()
	if c.drained != nil {
		<-c.drained
	}
	return err
}
