package session

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rendezvous-core/rendezvous/breakout"
	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/topology"
)

// Kind tells which procedure owns a session.
type Kind uint8

// Session kinds.
const (
	KindPGW  Kind = iota + 1 // S5/S8 PDN connection (default bearer), TS 29.274
	KindGGSN                 // Gn/Gp primary PDP context, TS 29.060
)

func (k Kind) String() string {
	switch k {
	case KindPGW:
		return "pgw"
	case KindGGSN:
		return "ggsn"
	}
	return "unknown"
}

// Session is one PDN connection or PDP context. The table hands out
// copies; the layout is kept small (≈ 200 octets; with the maps and pools
// ≈ 410, TestMemoryPerSession).
type Session struct {
	IMSI topology.IMSI
	// APN is the normalized APN (NormalizeAPN); its storage is shared with
	// the pool's name where they are equal.
	APN string
	// UE is the address allocated to the device.
	UE netip.Addr
	// PeerC is the SGW's/SGSN's control address (port 2123); PeerU its user
	// plane address (port 2152).
	PeerC, PeerU netip.AddrPort
	// Local is our control address the session was created on: requests
	// of ours about the session leave from it.
	Local netip.Addr
	// Started is the creation time, unix nanoseconds.
	Started int64
	// TEID is our TEID, for both the control and the user plane (they are
	// separate spaces, TS 29.274 §5.5.1, TS 29.281 §5.1). Its top 8 bits
	// are the node id.
	TEID breakout.TEID
	// PeerTEIDC and PeerTEIDU are the peer's control and user plane TEIDs.
	PeerTEIDC, PeerTEIDU breakout.TEID
	// ChargingID of the default bearer (TS 29.274 §8.29, TS 29.060 §7.7.26).
	ChargingID uint32
	// AMBR in kbit/s (APN-AMBR, TS 29.274 §8.7).
	AMBRUplink, AMBRDownlink uint32
	Kind                     Kind
	// Bearer is the EPS bearer id (5–15) or the NSAPI (5–15).
	Bearer uint8
	// QCI and ARP priority of the default bearer.
	QCI, ARP uint8

	// Usage reporting: the breakout counters and time of the last usage
	// record, and its sequence number (records are deltas, registry.Usage).
	usageSeq                 uint32
	reportedAt               int64
	reportedUp, reportedDown uint64
}

// ID is the session's anchor id in the registry: node id + TEID, hex.
func (s *Session) anchorID(node string) string { return fmt.Sprintf("%s-%08x", node, uint32(s.TEID)) }

// Params are what Create needs to make a session.
type Params struct {
	Kind             Kind
	IMSI             topology.IMSI
	Bearer           uint8
	APN              string
	PeerC, PeerU     netip.AddrPort
	Local            netip.Addr
	PeerTEIDC        breakout.TEID
	PeerTEIDU        breakout.TEID
	AMBRUp, AMBRDown uint32
	QCI, ARP         uint8
}

type bearerKey struct {
	imsi   topology.IMSI
	kind   Kind
	bearer uint8
}

type apnPools struct {
	name  string
	pools []*pool
}

// Table is a node's session table. All methods are safe for concurrent use.
type Table struct {
	cfg Config
	m   *metrics

	mu       sync.RWMutex
	byTEID   map[breakout.TEID]*Session
	byBearer map[bearerKey]*Session
	byUE     map[netip.Addr]*Session
	pools    map[string]*apnPools
	nextTEID uint32 // low 24 bits
	charging uint32
	closed   bool

	usage     chan registry.Usage
	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New builds a table and starts its usage goroutine.
func New(cfg Config) (*Table, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	t := &Table{
		cfg:      cfg,
		m:        m,
		byTEID:   make(map[breakout.TEID]*Session),
		byBearer: make(map[bearerKey]*Session),
		byUE:     make(map[netip.Addr]*Session),
		pools:    make(map[string]*apnPools),
		usage:    make(chan registry.Usage, cfg.UsageQueue),
		done:     make(chan struct{}),
		charging: uint32(cfg.Now().UnixNano()),
	}
	var all []*pool
	for _, pc := range cfg.Pools {
		p, err := newPool(pc.Prefix)
		if err != nil {
			return nil, err
		}
		for _, q := range all {
			if q.prefix.Overlaps(p.prefix) {
				return nil, fmt.Errorf("session: config: pool %v overlaps %v", p.prefix, q.prefix)
			}
		}
		all = append(all, p)
		name := NormalizeAPN(pc.APN)
		ap := t.pools[name]
		if ap == nil {
			ap = &apnPools{name: name}
			t.pools[name] = ap
		}
		ap.pools = append(ap.pools, p)
	}
	if cfg.Usage != nil {
		t.wg.Add(1)
		go t.usageLoop()
	}
	return t, nil
}

// Close stops the usage goroutine after it has drained the queued records
// (each bounded by UsageTimeout). Idempotent.
func (t *Table) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		t.mu.Unlock()
		close(t.done)
		t.wg.Wait()
	})
	return nil
}

// HasAPN reports whether the region has a pool for apn (or a "*" pool).
func (t *Table) HasAPN(apn string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.poolsFor(NormalizeAPN(apn)) != nil
}

func (t *Table) poolsFor(apn string) *apnPools {
	if p := t.pools[apn]; p != nil {
		return p
	}
	return t.pools["*"]
}

// allocTEID returns a free TEID with the node id in the top 8 bits, never
// 0 (TS 29.281 §5.1 reserves TEID 0).
func (t *Table) allocTEID() (breakout.TEID, bool) {
	hi := uint32(t.cfg.NodeID) << 24
	for range 1 << 24 {
		t.nextTEID = (t.nextTEID + 1) & 0xffffff
		id := breakout.TEID(hi | t.nextTEID)
		if id == 0 {
			continue
		}
		if _, busy := t.byTEID[id]; !busy {
			return id, true
		}
	}
	return 0, false
}

// Create allocates a TEID, a UE address and a charging id, installs the
// tunnel in the breakout and records the session. A session with the same
// kind, IMSI and bearer is replaced (TS 23.401 §5.3.2.1: a new Create
// Session for an existing default bearer releases the old PDN connection).
// Errors: ErrInvalid, ErrNoPool, ErrPoolExhausted, ErrNoTEID, or the
// breakout's error wrapped.
func (t *Table) Create(p Params) (Session, error) {
	if p.Kind != KindPGW && p.Kind != KindGGSN || p.IMSI == "" || !p.PeerC.IsValid() || !p.PeerU.IsValid() {
		return Session{}, fmt.Errorf("%w: kind %d IMSI %q peer %v/%v", ErrInvalid, p.Kind, p.IMSI, p.PeerC, p.PeerU)
	}
	apn := NormalizeAPN(p.APN)
	now := t.cfg.Now()
	var replaced *Session
	var replacedCounters breakout.Counters
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return Session{}, ErrClosed
	}
	ap := t.poolsFor(apn)
	if ap == nil {
		t.mu.Unlock()
		t.m.rejects.WithLabelValues("no_pool").Inc()
		return Session{}, fmt.Errorf("%w %q", ErrNoPool, apn)
	}
	if ap.name == apn {
		apn = ap.name // share the string
	}
	key := bearerKey{imsi: p.IMSI, kind: p.Kind, bearer: p.Bearer}
	if old := t.byBearer[key]; old != nil {
		replacedCounters = t.removeLocked(old)
		replaced = old
	}
	var ue netip.Addr
	for _, pl := range ap.pools {
		if a, ok := pl.alloc(); ok {
			ue = a
			break
		}
	}
	if !ue.IsValid() {
		t.mu.Unlock()
		t.finishRemoved(replaced, replacedCounters, now)
		t.m.rejects.WithLabelValues("pool_exhausted").Inc()
		return Session{}, fmt.Errorf("%w: APN %q", ErrPoolExhausted, apn)
	}
	teid, ok := t.allocTEID()
	if !ok {
		t.releaseUE(ue)
		t.mu.Unlock()
		t.finishRemoved(replaced, replacedCounters, now)
		return Session{}, ErrNoTEID
	}
	t.charging++
	if t.charging == 0 {
		t.charging = 1
	}
	s := &Session{
		IMSI: p.IMSI, APN: apn, UE: ue, PeerC: p.PeerC, PeerU: p.PeerU, Local: p.Local, Started: now.UnixNano(),
		TEID: teid, PeerTEIDC: p.PeerTEIDC, PeerTEIDU: p.PeerTEIDU, ChargingID: t.charging,
		AMBRUplink: p.AMBRUp, AMBRDownlink: p.AMBRDown, Kind: p.Kind, Bearer: p.Bearer, QCI: p.QCI, ARP: p.ARP,
	}
	if err := t.cfg.Tunnels.Install(s.tunnel()); err != nil {
		t.releaseUE(ue)
		t.mu.Unlock()
		t.finishRemoved(replaced, replacedCounters, now)
		t.m.rejects.WithLabelValues("breakout").Inc()
		return Session{}, fmt.Errorf("session: install tunnel %#08x: %w", uint32(teid), err)
	}
	t.byTEID[teid] = s
	t.byBearer[key] = s
	t.byUE[ue] = s
	out := *s
	n := len(t.byTEID)
	t.mu.Unlock()

	t.m.sessions.Set(float64(n))
	t.m.created.WithLabelValues(p.Kind.String()).Inc()
	t.finishRemoved(replaced, replacedCounters, now)
	t.anchor(&out, time.Time{})
	return out, nil
}

func (s *Session) tunnel() breakout.Tunnel {
	return breakout.Tunnel{LocalTEID: s.TEID, PeerTEID: s.PeerTEIDU, Peer: s.PeerU, UE: s.UE, IMSI: s.IMSI}
}

func (t *Table) releaseUE(a netip.Addr) {
	for _, ap := range t.pools {
		for _, pl := range ap.pools {
			if pl.contains(a) {
				pl.release(a)
				return
			}
		}
	}
}

// removeLocked drops s from the maps, its pool and the breakout.
func (t *Table) removeLocked(s *Session) breakout.Counters {
	delete(t.byTEID, s.TEID)
	delete(t.byBearer, bearerKey{imsi: s.IMSI, kind: s.Kind, bearer: s.Bearer})
	delete(t.byUE, s.UE)
	t.releaseUE(s.UE)
	c, err := t.cfg.Tunnels.Remove(s.TEID)
	if err != nil {
		t.m.breakoutErrors.Inc()
		t.cfg.Logger.Warn("session: breakout remove", "teid", fmt.Sprintf("%#08x", uint32(s.TEID)), "err", err)
	}
	return c
}

// finishRemoved reports a removed session: end anchor and final usage,
// both asynchronous. s is out of the maps: nothing else changes it.
func (t *Table) finishRemoved(s *Session, c breakout.Counters, now time.Time) {
	if s == nil {
		return
	}
	t.m.removed.WithLabelValues(s.Kind.String()).Inc()
	t.anchor(s, now)
	if t.cfg.Usage == nil {
		return
	}
	u := t.usageDelta(s, c, now)
	select {
	case t.usage <- u:
	default:
		t.m.usageDropped.Inc()
	}
}

// usageDelta makes the next usage record of s: the bytes since the last
// record (the breakout's counters are cumulative since install; counters
// lower than reported mean they restarted, e.g. on a re-install). Callers
// hold the table lock or own s.
func (t *Table) usageDelta(s *Session, c breakout.Counters, now time.Time) registry.Usage {
	baseUp, baseDown := s.reportedUp, s.reportedDown
	if c.BytesUp < baseUp || c.BytesDown < baseDown {
		baseUp, baseDown = 0, 0
	}
	from := s.reportedAt
	if from == 0 {
		from = s.Started
	}
	s.usageSeq++
	s.reportedUp, s.reportedDown, s.reportedAt = c.BytesUp, c.BytesDown, now.UnixNano()
	return registry.Usage{Session: s.anchorID(t.cfg.Node), Sequence: int64(s.usageSeq),
		BytesUp: c.BytesUp - baseUp, BytesDown: c.BytesDown - baseDown, From: time.Unix(0, from), To: now}
}

// sweepUsage sends an interim usage record for every session whose
// counters moved since its last record.
func (t *Table) sweepUsage() {
	t.mu.RLock()
	all := make([]*Session, 0, len(t.byTEID))
	for _, s := range t.byTEID {
		all = append(all, s)
	}
	t.mu.RUnlock()
	for _, s := range all {
		select {
		case <-t.done:
			return
		default:
		}
		c, ok := t.cfg.Tunnels.Counters(s.TEID) // TEID never changes
		if !ok {
			continue
		}
		now := t.cfg.Now()
		t.mu.Lock()
		if t.byTEID[s.TEID] != s || (c.BytesUp == s.reportedUp && c.BytesDown == s.reportedDown) {
			t.mu.Unlock()
			continue
		}
		u := t.usageDelta(s, c, now)
		t.mu.Unlock()
		t.record(u)
	}
}

func (t *Table) record(u registry.Usage) {
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.UsageTimeout)
	err := t.cfg.Usage.RecordUsage(ctx, u)
	cancel()
	if err != nil {
		t.m.usageErrors.Inc()
		t.cfg.Logger.Warn("session: record usage", "session", u.Session, "seq", u.Sequence, "err", err)
	}
}

func (t *Table) anchor(s *Session, ended time.Time) {
	if t.cfg.Anchors == nil {
		return
	}
	a := registry.SessionAnchor{
		ID: s.anchorID(t.cfg.Node), IMSI: s.IMSI, Region: t.cfg.Region, Node: t.cfg.Node, APN: s.APN, UE: s.UE,
		LocalTEIDControl: uint32(s.TEID), LocalTEIDUser: uint32(s.TEID),
		PeerTEIDControl: uint32(s.PeerTEIDC), PeerTEIDUser: uint32(s.PeerTEIDU),
		Started: time.Unix(0, s.Started), Ended: ended,
	}
	if !t.cfg.Anchors.Enqueue(a) {
		t.m.anchorsDropped.Inc()
	}
}

func (t *Table) usageLoop() {
	defer t.wg.Done()
	batch := make([]registry.Usage, 0, 128)
	flush := func() {
		for _, u := range batch {
			t.record(u)
		}
		batch = batch[:0]
	}
	var tick <-chan time.Time
	if t.cfg.UsageInterval > 0 {
		tk := time.NewTicker(t.cfg.UsageInterval)
		defer tk.Stop()
		tick = tk.C
	}
	for {
		select {
		case <-tick:
			t.sweepUsage()
		case u := <-t.usage:
			batch = append(batch, u)
			for len(batch) < cap(batch) {
				select {
				case u := <-t.usage:
					batch = append(batch, u)
					continue
				default:
				}
				break
			}
			flush()
		case <-t.done:
			for {
				select {
				case u := <-t.usage:
					batch = append(batch, u)
					if len(batch) == cap(batch) {
						flush()
					}
				default:
					flush()
					return
				}
			}
		}
	}
}

// Remove deletes the session with our TEID teid: from the maps, the pool
// and the breakout; its end anchor and usage go to the registry
// asynchronously.
func (t *Table) Remove(teid breakout.TEID) (Session, error) {
	now := t.cfg.Now()
	t.mu.Lock()
	s := t.byTEID[teid]
	if s == nil {
		t.mu.Unlock()
		return Session{}, fmt.Errorf("%w: TEID %#08x", ErrNotFound, uint32(teid))
	}
	c := t.removeLocked(s)
	n := len(t.byTEID)
	t.mu.Unlock()
	t.m.sessions.Set(float64(n))
	t.finishRemoved(s, c, now)
	return *s, nil
}

// RemoveIf removes every session for which match returns true and returns
// them. match runs under the table lock: it must not call the table.
func (t *Table) RemoveIf(match func(*Session) bool) []Session {
	now := t.cfg.Now()
	type rem struct {
		s *Session
		c breakout.Counters
	}
	var rs []rem
	t.mu.Lock()
	for _, s := range t.byTEID {
		if match(s) {
			rs = append(rs, rem{s, t.removeLocked(s)})
		}
	}
	n := len(t.byTEID)
	t.mu.Unlock()
	t.m.sessions.Set(float64(n))
	out := make([]Session, len(rs))
	for i, r := range rs {
		t.finishRemoved(r.s, r.c, now)
		out[i] = *r.s
	}
	return out
}

// Select returns copies of the sessions for which match returns true.
// match runs under the table's read lock: it must not call the table.
func (t *Table) Select(match func(*Session) bool) []Session {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []Session
	for _, s := range t.byTEID {
		if match(s) {
			out = append(out, *s)
		}
	}
	return out
}

// ByTEID returns the session with our TEID teid.
func (t *Table) ByTEID(teid breakout.TEID) (Session, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if s := t.byTEID[teid]; s != nil {
		return *s, true
	}
	return Session{}, false
}

// ByBearer returns the session of an IMSI's EPS bearer id (PGW) or NSAPI
// (GGSN).
func (t *Table) ByBearer(k Kind, imsi topology.IMSI, bearer uint8) (Session, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if s := t.byBearer[bearerKey{imsi: imsi, kind: k, bearer: bearer}]; s != nil {
		return *s, true
	}
	return Session{}, false
}

// ByUE returns the session holding a UE address.
func (t *Table) ByUE(a netip.Addr) (Session, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if s := t.byUE[a]; s != nil {
		return *s, true
	}
	return Session{}, false
}

// Len returns the number of sessions.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.byTEID)
}

// Update carries the peer side of a Modify Bearer (TS 29.274 §7.2.7) or an
// Update PDP Context (TS 29.060 §7.3.3). Zero fields are left unchanged.
type Update struct {
	PeerC, PeerU         netip.AddrPort
	PeerTEIDC, PeerTEIDU breakout.TEID
}

// UpdatePeer changes a session's peer F-TEIDs; if the user plane side
// changed, the tunnel is re-installed in the breakout.
func (t *Table) UpdatePeer(teid breakout.TEID, u Update) (Session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.byTEID[teid]
	if s == nil {
		return Session{}, fmt.Errorf("%w: TEID %#08x", ErrNotFound, uint32(teid))
	}
	next := *s
	if u.PeerC.IsValid() {
		next.PeerC = u.PeerC
	}
	if u.PeerTEIDC != 0 {
		next.PeerTEIDC = u.PeerTEIDC
	}
	if u.PeerU.IsValid() {
		next.PeerU = u.PeerU
	}
	if u.PeerTEIDU != 0 {
		next.PeerTEIDU = u.PeerTEIDU
	}
	if next.PeerU != s.PeerU || next.PeerTEIDU != s.PeerTEIDU {
		if err := t.cfg.Tunnels.Install(next.tunnel()); err != nil {
			t.m.breakoutErrors.Inc()
			return *s, fmt.Errorf("session: re-install tunnel %#08x: %w", uint32(teid), err)
		}
	}
	*s = next
	return next, nil
}

type metrics struct {
	sessions       prometheus.Gauge
	created        *prometheus.CounterVec
	removed        *prometheus.CounterVec
	rejects        *prometheus.CounterVec
	breakoutErrors prometheus.Counter
	anchorsDropped prometheus.Counter
	usageDropped   prometheus.Counter
	usageErrors    prometheus.Counter
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	const ns, sub = "rendezvous", "session"
	m := &metrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "active", Help: "Sessions in the table."}),
		created: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "created_total",
			Help: "Sessions created, by kind."}, []string{"kind"}),
		removed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "removed_total",
			Help: "Sessions removed, by kind."}, []string{"kind"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "create_failures_total",
			Help: "Session creations refused, by reason."}, []string{"reason"}),
		breakoutErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "breakout_errors_total",
			Help: "Breakout install/remove errors."}),
		anchorsDropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "anchors_dropped_total",
			Help: "Session anchors the registry queue refused."}),
		usageDropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "usage_dropped_total",
			Help: "Usage records dropped because the queue was full."}),
		usageErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "usage_errors_total",
			Help: "Usage records the registry refused."}),
	}
	for _, c := range []prometheus.Collector{m.sessions, m.created, m.removed, m.rejects, m.breakoutErrors,
		m.anchorsDropped, m.usageDropped, m.usageErrors} {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("session: register metrics: %w", err)
		}
	}
	return m, nil
}
