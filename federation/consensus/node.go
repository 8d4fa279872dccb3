package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rendezvous-core/rendezvous/federation/membership"
	"github.com/rendezvous-core/rendezvous/federation/steering"
	"github.com/rendezvous-core/rendezvous/topology"
)

// Node is this node's member of the raft group: the FSM holding the
// routing table, and the goroutine-owning shell around the Policy that
// runs the policy loop while this node leads. Create with New, stop with
// Close. Its methods are safe for concurrent use.
type Node struct {
	cfg    Config
	log    *slog.Logger
	raft   *raft.Raft
	trans  *raft.NetworkTransport
	wal    *walStore // nil in memory
	fsm    *fsm
	policy *Policy // owned by run()
	notify chan bool
	m      *metrics

	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	mu sync.Mutex // guards following fields
	// leading is true from a successful post-election Barrier until this
	// node loses the leadership.
	leading bool
	health  []RegionHealth
	// lastDecision is when this node last committed a policy decision.
	lastDecision time.Time
}

// New starts a node: it opens the stores, the transport and raft,
// bootstraps if configured, and starts the policy loop.
func New(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "consensus", "node", cfg.ID),
		notify: make(chan bool, 1),
		done:   make(chan struct{}),
	}
	var err error
	if n.policy, err = NewPolicy(cfg.Policy); err != nil {
		return nil, err
	}
	if n.m, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	n.fsm = newFSM(cfg.Regions, n.m)
	hcl := newHCLogger(n.log, "raft")

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if cfg.DataDir == "" {
		s := raft.NewInmemStore()
		logs, stable, snaps = s, s, raft.NewInmemSnapshotStore()
	} else {
		if logs, stable, snaps, n.wal, err = openStores(cfg.DataDir, cfg.SnapshotRetain, hcl); err != nil {
			return nil, err
		}
	}
	fail := func(err error) (*Node, error) {
		if n.trans != nil {
			n.trans.Close()
		}
		if n.wal != nil {
			n.wal.Close()
		}
		return nil, err
	}

	stream := cfg.StreamLayer
	if stream == nil {
		if stream, err = newTCPStreamLayer(cfg.BindAddr, cfg.AdvertiseAddr); err != nil {
			return fail(err)
		}
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:          stream,
		MaxPool:         3,
		MaxRPCsInFlight: cfg.Timing.MaxRPCsInFlight,
		Timeout:         cfg.Timing.RPCTimeout,
		Logger:          hcl,
	})

	rc := cfg.raftConfig()
	rc.Logger = hcl
	rc.NotifyCh = n.notify
	if err := raft.ValidateConfig(rc); err != nil {
		return fail(fmt.Errorf("consensus: raft config: %w", err))
	}
	if cfg.Bootstrap {
		has, err := raft.HasExistingState(logs, stable, snaps)
		if err != nil {
			return fail(fmt.Errorf("consensus: check existing state: %w", err))
		}
		if !has {
			if err := raft.BootstrapCluster(rc, logs, stable, snaps, n.trans, configuration(cfg.Servers)); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
				return fail(fmt.Errorf("consensus: bootstrap: %w", err))
			}
		}
	}
	if cfg.DataDir != "" {
		if logs, err = raft.NewLogCache(512, logs); err != nil { // as Consul does (notes/federation.md §3.4)
			return fail(fmt.Errorf("consensus: log cache: %w", err))
		}
	}
	if n.raft, err = raft.NewRaft(rc, n.fsm, logs, stable, snaps, n.trans); err != nil {
		return fail(fmt.Errorf("consensus: start raft: %w", err))
	}
	n.wg.Add(1)
	go n.run()
	return n, nil
}

func configuration(servers []Server) raft.Configuration {
	var c raft.Configuration
	for _, s := range servers {
		suf := raft.Nonvoter
		if s.Voter {
			suf = raft.Voter
		}
		c.Servers = append(c.Servers, raft.Server{Suffrage: suf, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.Address)})
	}
	return c
}

// run is the shell's only goroutine: it tracks leadership (Barrier after
// winning, before deciding), steps the policy every PolicyTick and proposes
// what it returns.
func (n *Node) run() {
	defer n.wg.Done()
	tick := time.NewTicker(n.cfg.Timing.PolicyTick)
	defer tick.Stop()
	needBarrier := false // won an election, Barrier not yet passed
	for {
		select {
		case <-n.done:
			return
		case isLeader := <-n.notify:
			n.setLeading(false)
			needBarrier = isLeader
			if needBarrier {
				needBarrier = !n.barrier()
			}
		case <-tick.C:
			if needBarrier {
				// A failed Barrier is retried while this node still leads:
				// otherwise it would lead a whole term without deciding.
				needBarrier = n.raft.State() == raft.Leader && !n.barrier()
			}
			n.step()
		}
	}
}

// barrier makes the FSM current after an election and reports whether the
// node may decide. Raft paper §8: a new leader does not know which entries
// of earlier terms are committed until it commits one of its own; Barrier
// does that and waits until the FSM has applied everything (Consul does the
// same, consul#2644).
func (n *Node) barrier() bool {
	start := time.Now()
	if err := n.raft.Barrier(n.cfg.Timing.ApplyTimeout).Error(); err != nil {
		n.log.Warn("barrier after election failed; not deciding yet", "err", err)
		return false
	}
	n.log.Info("leading: table is current", "barrier", time.Since(start), "index", n.raft.AppliedIndex())
	n.setLeading(true)
	return true
}

func (n *Node) setLeading(v bool) {
	n.mu.Lock()
	n.leading = v
	n.mu.Unlock()
	if v {
		n.m.leader.Set(1)
	} else {
		n.m.leader.Set(0)
	}
}

// step observes membership, steps the policy and proposes its commands.
func (n *Node) step() {
	n.mu.Lock()
	leading := n.leading
	n.mu.Unlock()
	if leading && n.raft.State() != raft.Leader {
		leading = false // the notification is on its way
	}
	obs := Observation{
		Now:     n.cfg.Now(),
		Leading: leading,
		Table:   n.fsm.table(),
		Peers:   peers(n.cfg.View.Members()),
		RTT:     n.cfg.View.RTTMatrix(),
	}
	cmds := n.policy.Step(obs)
	n.mu.Lock()
	n.health = n.policy.Health()
	n.mu.Unlock()
	for _, c := range cmds {
		n.log.Info("policy decision", "op", c.Op, "region", c.Region, "epoch", c.Epoch, "failover_to", c.FailoverTo, "reason", c.Reason)
		if _, err := n.apply(c); err != nil {
			n.log.Warn("policy decision not committed", "op", c.Op, "region", c.Region, "err", err)
			continue
		}
		n.mu.Lock()
		n.lastDecision = n.cfg.Now()
		n.mu.Unlock()
	}
}

// peers converts the membership view to the policy's: core members only.
func peers(ms []membership.Member) []Peer {
	out := make([]Peer, 0, len(ms))
	for _, m := range ms {
		if m.Role != membership.RoleCore || m.Region == "" {
			continue
		}
		out = append(out, Peer{Name: m.Name, Region: m.Region, Up: m.State == membership.StateAlive})
	}
	return out
}

// apply proposes c and waits until it is committed and applied by this
// (leader) node's FSM. The result reports a compare-and-set rejection.
func (n *Node) apply(c Command) (Region, error) {
	b, err := c.Encode()
	if err != nil {
		return Region{}, err
	}
	start := time.Now()
	f := n.raft.Apply(b, n.cfg.Timing.ApplyTimeout)
	if err := f.Error(); err != nil {
		n.m.commands.WithLabelValues(string(c.Op), "error").Inc()
		if errors.Is(err, raft.ErrNotLeader) {
			return Region{}, n.notLeader()
		}
		// ErrLeadershipLost is ambiguous: the entry may still commit. The
		// epoch makes a retry safe (notes/federation.md §3.1).
		return Region{}, fmt.Errorf("consensus: apply %s %s: %w", c.Op, c.Region, err)
	}
	n.m.applyLatency.Observe(time.Since(start).Seconds())
	res, _ := f.Response().(applyResult)
	if res.err != nil {
		n.m.commands.WithLabelValues(string(c.Op), "rejected").Inc()
		return res.row, res.err
	}
	n.m.commands.WithLabelValues(string(c.Op), "applied").Inc()
	return res.row, nil
}

func (n *Node) notLeader() error {
	addr, id := n.raft.LeaderWithID()
	return &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
}

// operator builds an operator command at the region's current epoch and
// proposes it on this node if it leads, else returns a *NotLeaderError.
func (n *Node) operator(ctx context.Context, op Op, region topology.RegionID, reason string) (Region, error) {
	if err := ctx.Err(); err != nil {
		return Region{}, err
	}
	select {
	case <-n.done:
		return Region{}, ErrClosed
	default:
	}
	if n.raft.State() != raft.Leader {
		return Region{}, n.notLeader()
	}
	// A fresh leader must not decide from a table older than its term.
	if err := n.raft.Barrier(n.cfg.Timing.ApplyTimeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return Region{}, n.notLeader()
		}
		return Region{}, fmt.Errorf("consensus: barrier before %s %s: %w", op, region, err)
	}
	t := n.fsm.table()
	row, ok := t.Regions[region]
	if !ok {
		return Region{}, fmt.Errorf("%w %q", ErrUnknownRegion, region)
	}
	if reason == "" {
		reason = "operator " + string(op)
	}
	c := Command{Op: op, Region: region, Epoch: row.Epoch, Origin: OriginOperator, At: n.cfg.Now(), Reason: reason}
	if op == OpFail || op == OpDrain {
		c.FailoverTo = failoverOrder(region, n.cfg.Regions, n.cfg.View.RTTMatrix(), t)
	}
	return n.apply(c)
}

// Drain stops steering new devices to region and moves its devices away
// (at the re-homing rate). Leader only: a follower returns *NotLeaderError.
func (n *Node) Drain(ctx context.Context, region topology.RegionID, reason string) (Region, error) {
	return n.operator(ctx, OpDrain, region, reason)
}

// Failover marks region failed by operator decision; the policy never
// restores it.
func (n *Node) Failover(ctx context.Context, region topology.RegionID, reason string) (Region, error) {
	return n.operator(ctx, OpFail, region, reason)
}

// Restore makes a failed or draining region active. Devices are not moved
// back (use Rebalance).
func (n *Node) Restore(ctx context.Context, region topology.RegionID, reason string) (Region, error) {
	return n.operator(ctx, OpRestore, region, reason)
}

// Rebalance asks every node to move back to the active region the devices
// that steering now sends there (at the re-homing rate).
func (n *Node) Rebalance(ctx context.Context, region topology.RegionID, reason string) (Region, error) {
	return n.operator(ctx, OpRebalance, region, reason)
}

// AddNonvoter adds a further node of a region as a non-voter (leader only).
func (n *Node) AddNonvoter(ctx context.Context, id, addr string) error {
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	if err := n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, n.cfg.Timing.ApplyTimeout).Error(); err != nil {
		return fmt.Errorf("consensus: add non-voter %s at %s: %w", id, addr, err)
	}
	return ctx.Err()
}

// TransferLeadership hands the leadership to the server id at addr (both
// empty: to the most up-to-date follower). Used to pin the leader to the
// best-connected site (notes/federation.md §3.1); it skips pre-vote.
func (n *Node) TransferLeadership(id, addr string) error {
	var f raft.Future
	if id == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		f = n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(addr))
	}
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return n.notLeader()
		}
		return fmt.Errorf("consensus: transfer leadership to %q: %w", id, err)
	}
	return nil
}

// AddVoter adds (or promotes) a voter (leader only). Keep the number of
// voters odd (notes/federation.md §3.7).
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	if err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, n.cfg.Timing.ApplyTimeout).Error(); err != nil {
		return fmt.Errorf("consensus: add voter %s at %s: %w", id, addr, err)
	}
	return ctx.Err()
}

// RemoveServer removes a server from the configuration (leader only).
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, n.cfg.Timing.ApplyTimeout).Error(); err != nil {
		return fmt.Errorf("consensus: remove server %s: %w", id, err)
	}
	return ctx.Err()
}

// Table returns a copy of the applied routing table.
func (n *Node) Table() Table { return n.fsm.table() }

// Subscribe returns a channel that receives the applied table after every
// change (latest wins: a slow reader skips intermediate tables, never the
// last one) and a cancel function. The current table is sent at once.
func (n *Node) Subscribe() (<-chan Table, func()) { return n.fsm.subscribe() }

// Leader returns the current leader's ID and raft address ("" if none).
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// IsLeader reports whether this node leads and has passed its Barrier.
func (n *Node) IsLeader() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leading && n.raft.State() == raft.Leader
}

// Stats is the node's consensus status.
type Stats struct {
	ID          string
	State       string // raft state: Follower, Candidate, Leader, Shutdown
	Leading     bool   // leader with a current table (policy loop deciding)
	LeaderID    string
	LeaderAddr  string
	Term        string
	LastContact string
	Applied     uint64
	Servers     []Server
	Health      []RegionHealth // the policy's view of each region
	// LastDecision is when this node last committed a policy decision
	// (zero if never).
	LastDecision time.Time
	Table        Table
}

// Stats returns the node's consensus status.
func (n *Node) Stats() Stats {
	rs := n.raft.Stats()
	s := Stats{
		ID:          n.cfg.ID,
		State:       n.raft.State().String(),
		Term:        rs["term"],
		LastContact: rs["last_contact"],
		Applied:     n.raft.AppliedIndex(),
		Table:       n.fsm.table(),
	}
	s.LeaderID, s.LeaderAddr = n.Leader()
	s.Leading = n.IsLeader()
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			s.Servers = append(s.Servers, Server{ID: string(srv.ID), Address: string(srv.Address), Voter: srv.Suffrage == raft.Voter})
		}
	}
	n.mu.Lock()
	s.Health = append([]RegionHealth(nil), n.health...)
	s.LastDecision = n.lastDecision
	n.mu.Unlock()
	return s
}

// Addr returns this node's raft address.
func (n *Node) Addr() string { return string(n.trans.LocalAddr()) }

// Close stops the policy loop and raft, closes the transport and the
// stores, and waits. It is idempotent and returns the first error.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		close(n.done)
		// Shut raft down before waiting: run may be blocked in an Apply or
		// Barrier, which shutdown unblocks.
		errs := []error{n.raft.Shutdown().Error()}
		n.wg.Wait()
		errs = append(errs, n.trans.Close())
		if n.wal != nil {
			errs = append(errs, n.wal.Close())
		}
		n.fsm.closeSubs()
		if err := errors.Join(errs...); err != nil {
			n.closeErr = fmt.Errorf("consensus: close %s: %w", n.cfg.ID, err)
		}
	})
	return n.closeErr
}

// applyResult is the FSM's response to one command.
type applyResult struct {
	row Region
	err error
}

// fsm is the raft.FSM: the routing table (Raft paper §5.3 "replicated
// state machine").
type fsm struct {
	m *metrics

	mu     sync.Mutex // guards following fields
	t      Table
	subs   map[int]chan Table
	nextID int
}

func newFSM(regions []topology.RegionID, m *metrics) *fsm {
	f := &fsm{m: m, t: NewTable(regions), subs: map[int]chan Table{}}
	f.publish()
	return f
}

func (f *fsm) Apply(l *raft.Log) interface{} {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := DecodeCommand(l.Data)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.t.Index = l.Index
		return applyResult{err: err}
	}
	n, err := f.t.Apply(l.Index, c)
	f.t = n
	f.publish()
	return applyResult{row: n.Regions[c.Region], err: err}
}

// publish sends the table to every subscriber (latest wins) and updates
// the gauges. Called with mu held.
func (f *fsm) publish() {
	for _, ch := range f.subs {
		select {
		case <-ch:
		default:
		}
		ch <- f.t.Clone()
	}
	if f.m != nil {
		for r, row := range f.t.Regions {
			f.m.state.WithLabelValues(string(r)).Set(float64(row.State))
			f.m.epoch.WithLabelValues(string(r)).Set(float64(row.Epoch))
		}
	}
}

func (f *fsm) table() Table {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t.Clone()
}

func (f *fsm) subscribe() (<-chan Table, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan Table, 1) // latest-wins mailbox
	id := f.nextID
	f.nextID++
	f.subs[id] = ch
	ch <- f.t.Clone()
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.subs, id)
	}
}

func (f *fsm) closeSubs() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, ch := range f.subs {
		close(ch)
		delete(f.subs, id)
	}
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{t: f.table()}, nil // the copy is the capture; I/O in Persist
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var t Table
	if err := json.NewDecoder(rc).Decode(&t); err != nil {
		return fmt.Errorf("consensus: restore snapshot: %w", err)
	}
	if t.Regions == nil {
		t.Regions = map[topology.RegionID]Region{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// Restore discards all old state (raft fsm.go contract), but keeps the
	// configured regions a snapshot may predate.
	for r := range f.t.Regions {
		if _, ok := t.Regions[r]; !ok {
			t.Regions[r] = Region{State: steering.StateActive}
		}
	}
	f.t = t
	f.publish()
	return nil
}

type fsmSnapshot struct{ t Table }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.t); err != nil {
		sink.Cancel()
		return fmt.Errorf("consensus: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

func jsonMarshalIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("consensus: encode: %w", err)
	}
	return b, nil
}

// tcpStreamLayer is a plain TCP raft.StreamLayer (raft's own is created
// only inside NewTCPTransport, which does not let us set the dialer).
type tcpStreamLayer struct {
	net.Listener
	advertise net.Addr
}

func newTCPStreamLayer(bind, advertise string) (*tcpStreamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("consensus: listen %s: %w", bind, err)
	}
	s := &tcpStreamLayer{Listener: ln, advertise: ln.Addr()}
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("consensus: advertise address %q: %w", advertise, err)
		}
		s.advertise = a
	}
	return s, nil
}

func (s *tcpStreamLayer) Addr() net.Addr { return s.advertise }

func (s *tcpStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}
