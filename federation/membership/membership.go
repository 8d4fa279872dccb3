package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/rendezvous-core/rendezvous/federation/steering"
	"github.com/rendezvous-core/rendezvous/topology"
)

// ErrClosed is returned by methods called after Close.
var ErrClosed = errors.New("membership: closed")

// Invalidation tells every node's registry cache that a subscriber's row
// changed: entries older than Revision are stale.
type Invalidation struct {
	IMSI     topology.IMSI `json:"i"`
	Revision int64         `json:"r"`
}

// Membership is this node's member of the gossip pool. Create with New,
// stop with Close. Methods are safe for concurrent use.
type Membership struct {
	cfg   Config
	log   *slog.Logger
	ml    *memberlist.Memberlist
	queue *memberlist.TransmitLimitedQueue
	m     *metrics
	addr  netip.AddrPort

	events chan func() // to the dispatcher goroutine; see Config.OnInvalidation
	done   chan struct{}
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	mu sync.Mutex // guards following fields
	// seen is every node ever seen, with its last known state: memberlist's
	// Members() omits dead and left nodes, the health view must not.
	seen map[string]*Member
	// rtt holds the last RTTSamples direct-probe RTTs per peer.
	rtt  map[string][]time.Duration
	meta Meta
	// leaving holds peers that announced a graceful leave.
	leaving map[string]bool
	// invSeen is the newest revision seen per IMSI (bounded, see
	// maxInvSeen): an invalidation is delivered and re-gossiped once.
	invSeen map[topology.IMSI]int64
	// published is the RTT row last put in the metadata.
	published map[topology.RegionID]uint32
}

// New joins the gossip pool: it binds the transport, starts memberlist,
// joins the seeds (failure to reach any is not an error: the re-join loop
// keeps trying) and starts the re-join loop.
func New(cfg Config) (*Membership, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m := &Membership{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "membership", "node", cfg.Name),
		events:  make(chan func(), 1024), // a burst of invalidations (≈ one gossip round)
		done:    make(chan struct{}),
		seen:    map[string]*Member{},
		rtt:     map[string][]time.Duration{},
		leaving: map[string]bool{},
		invSeen: map[topology.IMSI]int64{},
		meta:    Meta{Region: cfg.Region, Role: cfg.Role, Version: cfg.Version, Addrs: maps.Clone(cfg.Addrs)},
	}
	if _, err := m.meta.encode(); err != nil {
		return nil, err
	}
	var err error
	if m.m, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	mc := cfg.memberlistConfig()
	mc.Logger = log.New(&logWriter{m.log}, "", 0)
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{cfg.BindAddr},
		BindPort:  cfg.BindPort,
		Logger:    mc.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("membership: bind %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
	}
	if mc.BindPort == 0 {
		mc.BindPort = nt.GetAutoBindPort()
		if mc.AdvertisePort == 0 {
			mc.AdvertisePort = mc.BindPort
		}
	}
	var tr memberlist.NodeAwareTransport = nt
	if cfg.WrapTransport != nil {
		tr = cfg.WrapTransport(nt)
	}
	mc.Transport = tr
	d := &delegate{m: m}
	mc.Delegate, mc.Events, mc.Ping = d, d, d
	m.queue = &memberlist.TransmitLimitedQueue{RetransmitMult: cfg.Profile.RetransmitMult, NumNodes: m.numAlive}
	advIP, advPort := cfg.AdvertiseAddr, mc.AdvertisePort
	if advIP == "" {
		advIP = cfg.BindAddr
	}
	if advPort == 0 {
		advPort = mc.BindPort
	}
	if ip, err := netip.ParseAddr(advIP); err == nil {
		m.addr = netip.AddrPortFrom(ip.Unmap(), uint16(advPort))
	}
	if m.ml, err = memberlist.Create(mc); err != nil {
		nt.Shutdown()
		return nil, fmt.Errorf("membership: start memberlist: %w", err)
	}

	m.wg.Add(2)
	go m.dispatch()
	go m.maintain()
	if seeds := m.otherSeeds(); len(seeds) > 0 {
		if n, err := m.ml.Join(seeds); err != nil {
			m.log.Warn("joining seeds failed; the re-join loop keeps trying", "joined", n, "err", err)
		}
	}
	return m, nil
}

// Addr returns the gossip address peers reach this node at.
func (m *Membership) Addr() netip.AddrPort { return m.addr }

// Name returns this node's name.
func (m *Membership) Name() string { return m.cfg.Name }

func (m *Membership) otherSeeds() []string {
	var out []string
	for _, s := range m.cfg.Seeds {
		if ap, err := netip.ParseAddrPort(s); err == nil && ap == m.addr {
			continue
		}
		out = append(out, s)
	}
	return out
}

// dispatch runs user callbacks (OnInvalidation, OnChange) so that
// memberlist's delegate methods never block on them.
func (m *Membership) dispatch() {
	defer m.wg.Done()
	for {
		select {
		case <-m.done:
			return
		case f := <-m.events:
			f()
		}
	}
}

func (m *Membership) post(f func()) {
	select {
	case m.events <- f:
	default:
		m.m.dropped.Inc()
	}
}

// changed is called from event delegates, which memberlist calls with its
// node lock held: anything that reads the view (Members) runs later, in
// dispatch.
func (m *Membership) changed() {
	m.post(func() {
		m.updateGauges()
		if m.cfg.OnChange != nil {
			m.cfg.OnChange()
		}
	})
}

// maintain is the re-join loop and the RTT publisher.
func (m *Membership) maintain() {
	defer m.wg.Done()
	rejoin := time.NewTicker(m.cfg.Profile.RejoinInterval)
	defer rejoin.Stop()
	publish := time.NewTicker(m.cfg.Profile.RTTPublishInterval)
	defer publish.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-rejoin.C:
			m.rejoin()
		case <-publish.C:
			m.publishRTT()
		}
	}
}

// rejoin joins every seed that is not an alive member. memberlist never
// reconnects after both sides of a partition marked each other dead
// (notes/federation.md §1.8: membership stayed split 90 s after the heal;
// an explicit Join restored it in < 3 s).
func (m *Membership) rejoin() {
	alive := map[netip.AddrPort]bool{}
	for _, mem := range m.Members() {
		if mem.State == StateAlive {
			alive[mem.Addr] = true
		}
	}
	var missing []string
	for _, s := range m.otherSeeds() {
		ap, err := netip.ParseAddrPort(s)
		if err != nil || !alive[ap] {
			missing = append(missing, s)
		}
	}
	if len(missing) == 0 {
		return
	}
	n, err := m.ml.Join(missing)
	m.m.rejoins.Inc()
	if err != nil {
		m.log.Debug("re-join", "seeds", missing, "joined", n, "err", err)
	} else {
		m.log.Info("re-joined seeds", "seeds", missing, "joined", n)
	}
}

// publishRTT puts this node's per-region median RTT row into its metadata
// when it changed by more than 10 % (or a region appeared), so that every
// node can build the full region×region matrix.
func (m *Membership) publishRTT() {
	row := m.rttRow()
	m.mu.Lock()
	changed := len(row) != len(m.published)
	for r, v := range row {
		old, ok := m.published[r]
		if !ok || float64(v) > float64(old)*1.1 || float64(v) < float64(old)*0.9 {
			changed = true
		}
	}
	if changed {
		m.published = row
	}
	m.mu.Unlock()
	if !changed {
		return
	}
	if err := m.ml.UpdateNode(m.cfg.Profile.TCPTimeout); err != nil {
		m.log.Debug("publish RTT row", "err", err)
	}
}

// rttRow is this node's median RTT to each region (µs): the median over the
// region's peers of each peer's median sample.
func (m *Membership) rttRow() map[topology.RegionID]uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	per := map[topology.RegionID][]time.Duration{}
	for name, samples := range m.rtt {
		peer, ok := m.seen[name]
		if !ok || peer.Region == "" || len(samples) == 0 {
			continue
		}
		per[peer.Region] = append(per[peer.Region], median(samples))
	}
	row := make(map[topology.RegionID]uint32, len(per))
	for r, ds := range per {
		row[r] = uint32(median(ds).Microseconds())
	}
	return row
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Members returns the health view: every node ever seen, in name order,
// with its state in this node's view.
//
// States come from memberlist's EventDelegate (join → alive, leave → dead
// or left), which it calls with its node lock held. memberlist v0.7.0 has
// no race-free way to read suspicion: Members() returns pointers to nodes
// it keeps mutating (reading their State is a data race, caught by -race),
// and there is no suspect event. So StateSuspect is never reported; a
// member is alive until memberlist's suspicion timeout (with Lifeguard's
// confirmations, notes/federation.md §1.2) declares it dead.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.seen))
	for _, name := range slices.Sorted(maps.Keys(m.seen)) {
		mem := *m.seen[name]
		mem.Meta.Addrs = maps.Clone(mem.Meta.Addrs)
		mem.Meta.RTT = maps.Clone(mem.Meta.RTT)
		out = append(out, mem)
	}
	return out
}

// numAlive is the number of alive members (self included) for the
// broadcast queue's retransmit scaling.
func (m *Membership) numAlive() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, mem := range m.seen {
		if mem.State == StateAlive {
			n++
		}
	}
	return max(n, 1)
}

// Member returns one member of the view by name.
func (m *Membership) Member(name string) (Member, bool) {
	for _, mem := range m.Members() {
		if mem.Name == name {
			return mem, true
		}
	}
	return Member{}, false
}

// PeerRTT returns this node's median direct-probe RTT to each peer.
func (m *Membership) PeerRTT() map[string]time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]time.Duration, len(m.rtt))
	for name, s := range m.rtt {
		if len(s) > 0 {
			out[name] = median(s)
		}
	}
	return out
}

// RTTMatrix returns the region×region median RTT matrix: for each pair,
// the median over the reports of every alive core node (its own row, from
// its metadata; this node's row is computed live). Pairs nobody measured
// are absent. This is a node-local view: only the raft leader turns it into
// decisions (notes/federation.md §2).
func (m *Membership) RTTMatrix() steering.Matrix {
	own := m.rttRow()
	reports := map[steering.Pair][]time.Duration{}
	add := func(from topology.RegionID, row map[topology.RegionID]uint32) {
		if from == "" {
			return
		}
		for to, us := range row {
			if us > 0 {
				p := steering.MakePair(from, to)
				reports[p] = append(reports[p], time.Duration(us)*time.Microsecond)
			}
		}
	}
	add(m.cfg.Region, own)
	for _, mem := range m.Members() {
		if mem.Name == m.cfg.Name || mem.State != StateAlive {
			continue
		}
		add(mem.Region, mem.Meta.RTT)
	}
	out := make(steering.Matrix, len(reports))
	for p, ds := range reports {
		out[p] = median(ds)
	}
	return out
}

// SetLoad updates the load figure gossiped in the metadata (0–1000).
func (m *Membership) SetLoad(load uint32) error {
	m.mu.Lock()
	m.meta.Load = min(load, 1000)
	m.mu.Unlock()
	if err := m.ml.UpdateNode(m.cfg.Profile.TCPTimeout); err != nil {
		return fmt.Errorf("membership: update load: %w", err)
	}
	return nil
}

// Broadcast gossips a registry cache invalidation to every node (best
// effort, unordered: a hint, never a decision — notes/federation.md §1.5).
// A queued invalidation of the same IMSI at an older revision is replaced.
func (m *Membership) Broadcast(inv Invalidation) error {
	select {
	case <-m.done:
		return ErrClosed
	default:
	}
	m.fresh(inv)
	if err := m.queueInvalidation(inv); err != nil {
		return err
	}
	m.m.broadcasts.Inc()
	return nil
}

// maxInvSeen bounds the dedup map; when full it is reset, which at worst
// re-delivers and re-gossips an invalidation once more (harmless).
const maxInvSeen = 1 << 16

// fresh records inv and reports whether it is newer than anything seen for
// its IMSI.
func (m *Membership) fresh(inv Invalidation) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.invSeen[inv.IMSI]; ok && r >= inv.Revision {
		return false
	}
	if len(m.invSeen) >= maxInvSeen {
		clear(m.invSeen)
	}
	m.invSeen[inv.IMSI] = inv.Revision
	return true
}

func (m *Membership) queueInvalidation(inv Invalidation) error {
	b, err := json.Marshal(inv)
	if err != nil {
		return fmt.Errorf("membership: encode invalidation: %w", err)
	}
	m.queue.QueueBroadcast(&broadcast{inv: inv, msg: append([]byte{msgInvalidation}, b...)})
	return nil
}

// NumMembers returns the number of alive members, self included.
func (m *Membership) NumMembers() int { return m.numAlive() }

// Close leaves (if LeaveOnClose) and shuts memberlist down, then stops and
// waits for this package's goroutines. memberlist's own goroutines are not
// joinable (it does not wait for them, notes/style.md §2); they exit
// shortly after Shutdown. Idempotent.
func (m *Membership) Close() error {
	m.closeOnce.Do(func() {
		var errs []error
		if m.cfg.LeaveOnClose {
			// Tell peers this is a leave, not a crash, then leave: the
			// announcement rides the gossip rounds Leave waits for.
			m.queue.QueueBroadcast(&leavingBroadcast{msg: append([]byte{msgLeaving}, m.cfg.Name...)})
			time.Sleep(2 * m.cfg.Profile.GossipInterval)
			if err := m.ml.Leave(2 * m.cfg.Profile.ProbeInterval); err != nil {
				errs = append(errs, fmt.Errorf("leave: %w", err))
			}
		}
		errs = append(errs, m.ml.Shutdown())
		close(m.done)
		m.wg.Wait()
		if err := errors.Join(errs...); err != nil {
			m.closeErr = fmt.Errorf("membership: close %s: %w", m.cfg.Name, err)
		}
	})
	return m.closeErr
}

// Message types of our gossip broadcasts.
const (
	msgInvalidation byte = 'i'
	msgLeaving      byte = 'l'
)

type leavingBroadcast struct{ msg []byte }

func (b *leavingBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *leavingBroadcast) Message() []byte                       { return b.msg }
func (b *leavingBroadcast) Finished()                             {}

type broadcast struct {
	inv Invalidation
	msg []byte
}

// Invalidates: a newer (or equal) revision of the same IMSI supersedes a
// queued one.
func (b *broadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*broadcast)
	return ok && o.inv.IMSI == b.inv.IMSI && o.inv.Revision <= b.inv.Revision
}
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}

// delegate implements memberlist's Delegate, EventDelegate and
// PingDelegate. memberlist calls them from its own goroutines; they never
// block (delegate.go contract): callbacks go through dispatch.
type delegate struct{ m *Membership }

func (d *delegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	meta := d.m.meta
	meta.Addrs = maps.Clone(meta.Addrs)
	meta.RTT = maps.Clone(d.m.published)
	d.m.mu.Unlock()
	b, err := meta.encode()
	if err != nil || len(b) > limit {
		meta.RTT = nil // the RTT row is the only optional part
		b, _ = meta.encode()
	}
	return b
}

func (d *delegate) NotifyMsg(b []byte) {
	if len(b) > 1 && b[0] == msgLeaving {
		d.m.mu.Lock()
		d.m.leaving[string(b[1:])] = true
		d.m.mu.Unlock()
		return
	}
	if len(b) == 0 || b[0] != msgInvalidation {
		return
	}
	var inv Invalidation
	if err := json.Unmarshal(b[1:], &inv); err != nil { // Unmarshal copies: b may be reused
		d.m.log.Debug("bad invalidation message", "err", err)
		return
	}
	if !d.m.fresh(inv) {
		return
	}
	d.m.m.received.Inc()
	// memberlist sends a user broadcast only RetransmitMult×⌈log10(N+1)⌉
	// times from its origin (4 sends at N=5: a given peer misses it with
	// probability ~0.2) and receivers do not relay it. Relaying each new
	// invalidation once makes it epidemic, as memberlist's own state
	// messages are.
	if err := d.m.queueInvalidation(inv); err != nil {
		d.m.log.Debug("relay invalidation", "err", err)
	}
	if f := d.m.cfg.OnInvalidation; f != nil {
		d.m.post(func() { f(inv) })
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.m.queue.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(join bool) []byte            { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

// memberlist v0.7.0 never sets the Node.State it passes to the event
// delegate (nodeState.State shadows it; it is always StateAlive), so the
// state comes from which event fired. A graceful leave is told apart from
// a death by the leaving node's own broadcast (see Close).
func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.update(n, StateAlive) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.update(n, StateAlive) }
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	st := StateDead
	d.m.mu.Lock()
	if d.m.leaving[n.Name] {
		st = StateLeft
	}
	d.m.mu.Unlock()
	d.update(n, st)
}

func (d *delegate) update(n *memberlist.Node, st State) {
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		d.m.log.Warn("peer with undecodable metadata", "peer", n.Name, "err", err)
	}
	ip, _ := netip.AddrFromSlice(n.Addr)
	mem := &Member{
		Name:   n.Name,
		Region: meta.Region,
		Role:   meta.Role,
		State:  st,
		Addr:   netip.AddrPortFrom(ip.Unmap(), n.Port),
		Meta:   meta,
	}
	d.m.mu.Lock()
	d.m.seen[n.Name] = mem
	if st == StateAlive {
		delete(d.m.leaving, n.Name)
	}
	if mem.State == StateDead || mem.State == StateLeft {
		delete(d.m.rtt, n.Name) // stale samples must not outlive the peer
	}
	d.m.mu.Unlock()
	d.m.log.Debug("member", "peer", n.Name, "state", mem.State, "region", mem.Region)
	d.m.changed()
}

func (d *delegate) AckPayload() []byte { return nil }

// NotifyPingComplete is the RTT source: direct UDP probes only; measured
// medians were within +2–7 ms of the emulated RTT (notes/federation.md §1.5).
func (d *delegate) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, payload []byte) {
	if rtt <= 0 {
		return
	}
	d.m.mu.Lock()
	s := append(d.m.rtt[other.Name], rtt)
	if len(s) > d.m.cfg.RTTSamples {
		s = s[len(s)-d.m.cfg.RTTSamples:]
	}
	d.m.rtt[other.Name] = s
	d.m.mu.Unlock()
}

func (m *Membership) updateGauges() {
	counts := map[State]int{}
	for _, mem := range m.Members() {
		counts[mem.State]++
	}
	for _, s := range []State{StateAlive, StateSuspect, StateDead, StateLeft} {
		m.m.members.WithLabelValues(s.String()).Set(float64(counts[s]))
	}
}

// logWriter routes memberlist's "[LEVEL] memberlist: msg" lines into slog.
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	s := string(p)
	lvl := slog.LevelInfo
	for _, l := range []struct {
		prefix string
		lvl    slog.Level
	}{{"[DEBUG] ", slog.LevelDebug}, {"[INFO] ", slog.LevelInfo}, {"[WARN] ", slog.LevelWarn}, {"[ERR] ", slog.LevelError}, {"[ERROR] ", slog.LevelError}} {
		if len(s) >= len(l.prefix) && s[:len(l.prefix)] == l.prefix {
			lvl, s = l.lvl, s[len(l.prefix):]
			break
		}
	}
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	w.log.Log(context.Background(), lvl, s)
	return len(p), nil
}
