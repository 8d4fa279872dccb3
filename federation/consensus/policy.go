package consensus

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/steering"
	"github.com/rendezvous-core/rendezvous/topology"
)

// PolicyConfig configures the failover policy. Zero durations take the
// production defaults of ProductionPolicy.
type PolicyConfig struct {
	// Regions of the federation, in tie-breaking order.
	Regions []topology.RegionID
	// ConfirmWindow is how long every core member of a region must have
	// been dead, suspect or left (continuously) before the region is
	// failed. Default 3 s. memberlist v0.7.0 reports only deaths race-free
	// (membership.Members), and a death is already confirmed: the tuned
	// profile declares it after the suspicion timeout with k=2 peer
	// confirmations, 7.5–9 s after a crash, with 0 false deaths at 10 % and
	// 30 % loss (notes/federation.md §1.3). The window adds margin for a
	// falsely dead node that refutes (it is alive again within a probe
	// round or two), so the decision lands ~10.5–12 s after a crash.
	ConfirmWindow time.Duration
	// HealthyWindow is how long at least one core member of a failed
	// region must have been alive (continuously) before the policy
	// restores it: the anti-flap hysteresis. Default 60 s (notes/federation.md §5, step 3). Regions
	// failed or drained by an operator are never restored by policy.
	HealthyWindow time.Duration
	// StartupGrace: a region none of whose core members this node has ever
	// seen alive is not failed before StartupGrace has passed since the
	// policy's first observation, so that a federation booting node by
	// node does not fail the regions that start last. Default 30 s.
	StartupGrace time.Duration
	// RetryAfter is how long a proposal may stay without effect on the
	// table before the policy proposes again. Default 10 s.
	RetryAfter time.Duration
	// RTTInterval is the minimum time between two set-rtt commands; 0
	// takes the default 5 min, negative disables RTT commits.
	RTTInterval time.Duration
	// RTTChange is the relative change of any pair's RTT that makes the
	// leader commit a new matrix. Default 0.25.
	RTTChange float64
}

// ProductionPolicy returns the production policy timings for regions.
func ProductionPolicy(regions []topology.RegionID) PolicyConfig {
	return PolicyConfig{
		Regions:       slices.Clone(regions),
		ConfirmWindow: 3 * time.Second,
		HealthyWindow: 60 * time.Second,
		StartupGrace:  30 * time.Second,
		RetryAfter:    10 * time.Second,
		RTTInterval:   5 * time.Minute,
		RTTChange:     0.25,
	}
}

func (c *PolicyConfig) validate() error {
	if len(c.Regions) == 0 {
		return errors.New("consensus: policy: no regions")
	}
	d := ProductionPolicy(nil)
	if c.ConfirmWindow <= 0 {
		c.ConfirmWindow = d.ConfirmWindow
	}
	if c.HealthyWindow <= 0 {
		c.HealthyWindow = d.HealthyWindow
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = d.RetryAfter
	}
	if c.StartupGrace == 0 {
		c.StartupGrace = d.StartupGrace
	}
	if c.RTTInterval == 0 {
		c.RTTInterval = d.RTTInterval
	}
	if c.RTTChange <= 0 {
		c.RTTChange = d.RTTChange
	}
	return nil
}

// Peer is one core member of a region as the membership view shows it.
// Witnesses are not peers of any region.
type Peer struct {
	Name   string
	Region topology.RegionID
	Up     bool // alive; false for suspect, dead or left
}

// Observation is one input of the policy.
type Observation struct {
	Now time.Time
	// Leading is true when this node is the raft leader and has applied a
	// Barrier since it won the election (Consul does the same; consul#2644):
	// only then is Table current enough to decide from.
	Leading bool
	Table   Table
	Peers   []Peer
	// RTT is this node's measured region×region matrix (optional).
	RTT steering.Matrix
}

// RegionHealth is the policy's view of one region.
type RegionHealth struct {
	Region topology.RegionID
	Down   bool      // every core member dead/suspect/left (or none known)
	Since  time.Time // when Down last changed
	Up     int       // core members alive
	Total  int       // core members known
}

type track struct {
	down    bool
	since   time.Time
	up      int
	total   int
	seen    bool
	everUp  bool // a core member was seen alive at least once
	pending bool
	pEpoch  uint64
	pAt     time.Time
}

// Policy is the failover policy: a synchronous, deterministic state
// machine (the etcd-io/raft shape): Step takes an observation and the
// current time and returns the commands to propose; it does no I/O and
// reads no clock. Every node steps it, so that a newly elected leader
// already has the history of its observations; only a leading step returns
// commands. Not safe for concurrent use.
type Policy struct {
	cfg     PolicyConfig
	first   time.Time // first observation
	regions map[topology.RegionID]*track
	rttAt   time.Time
	rttPend bool
	rttPEp  uint64
}

// NewPolicy returns a policy for cfg (defaults filled in).
func NewPolicy(cfg PolicyConfig) (*Policy, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Policy{cfg: cfg, regions: make(map[topology.RegionID]*track)}
	for _, r := range cfg.Regions {
		p.regions[r] = &track{}
	}
	return p, nil
}

// Health returns the policy's view of every region, in configured order.
func (p *Policy) Health() []RegionHealth {
	out := make([]RegionHealth, 0, len(p.cfg.Regions))
	for _, r := range p.cfg.Regions {
		t := p.regions[r]
		out = append(out, RegionHealth{Region: r, Down: t.down, Since: t.since, Up: t.up, Total: t.total})
	}
	return out
}

// Step feeds one observation and returns the commands to propose (none
// unless o.Leading). The caller proposes them through raft; their effect
// is seen in a later observation's Table.
func (p *Policy) Step(o Observation) []Command {
	if p.first.IsZero() {
		p.first = o.Now
	}
	for _, r := range p.cfg.Regions {
		t := p.regions[r]
		up, total := 0, 0
		for _, peer := range o.Peers {
			if peer.Region == r {
				total++
				if peer.Up {
					up++
				}
			}
		}
		down := up == 0
		t.everUp = t.everUp || !down
		if !t.seen || down != t.down {
			t.down, t.since, t.seen = down, o.Now, true
		}
		t.up, t.total = up, total
		// A pending proposal is settled once the table moved past its
		// epoch (applied, or overtaken), or expires after RetryAfter.
		if t.pending {
			if row := o.Table.Regions[r]; row.Epoch != t.pEpoch || o.Now.Sub(t.pAt) >= p.cfg.RetryAfter {
				t.pending = false
			}
		}
	}
	if p.rttPend && (o.Table.RTTEpoch != p.rttPEp || o.Now.Sub(p.rttAt) >= p.cfg.RetryAfter) {
		p.rttPend = false
	}
	if !o.Leading {
		return nil
	}

	var cmds []Command
	active := o.Table.active()
	for _, r := range p.cfg.Regions {
		t := p.regions[r]
		row, ok := o.Table.Regions[r]
		if !ok || t.pending {
			continue
		}
		switch {
		case row.State == steering.StateActive && t.down && o.Now.Sub(t.since) >= p.cfg.ConfirmWindow:
			if active <= 1 {
				continue // never fail the last active region
			}
			if !t.everUp && o.Now.Sub(p.first) < p.cfg.StartupGrace {
				continue // still booting, perhaps
			}
			active--
			cmds = append(cmds, Command{
				Op: OpFail, Region: r, Epoch: row.Epoch, Origin: OriginPolicy, At: o.Now,
				FailoverTo: failoverOrder(r, p.cfg.Regions, o.RTT, o.Table),
				Reason:     fmt.Sprintf("all %d core member(s) dead or suspect since %s (confirmation window %s)", t.total, t.since.UTC().Format(time.RFC3339Nano), p.cfg.ConfirmWindow),
			})
		case row.State == steering.StateFailed && row.Origin == OriginPolicy && !t.down && o.Now.Sub(t.since) >= p.cfg.HealthyWindow:
			cmds = append(cmds, Command{
				Op: OpRestore, Region: r, Epoch: row.Epoch, Origin: OriginPolicy, At: o.Now,
				Reason: fmt.Sprintf("%d of %d core member(s) alive since %s (healthy window %s)", t.up, t.total, t.since.UTC().Format(time.RFC3339Nano), p.cfg.HealthyWindow),
			})
		default:
			continue
		}
		t.pending, t.pEpoch, t.pAt = true, row.Epoch, o.Now
	}
	if c, ok := p.rttCommand(o); ok {
		cmds = append(cmds, c)
	}
	return cmds
}

// rttCommand proposes the measured matrix when it differs materially from
// the committed one. Steering uses the committed matrix only, so that
// every node decides the same (notes/federation.md §2).
func (p *Policy) rttCommand(o Observation) (Command, bool) {
	if p.cfg.RTTInterval < 0 || len(o.RTT) == 0 || p.rttPend {
		return Command{}, false
	}
	if !p.rttAt.IsZero() && o.Now.Sub(p.rttAt) < p.cfg.RTTInterval {
		return Command{}, false
	}
	committed := o.Table.Matrix()
	changed := false
	for k, d := range o.RTT {
		c, ok := committed[k]
		if !ok || c <= 0 {
			changed = true
			break
		}
		if diff := float64(d-c) / float64(c); diff > p.cfg.RTTChange || diff < -p.cfg.RTTChange {
			changed = true
			break
		}
	}
	if !changed {
		return Command{}, false
	}
	entries := make([]RTTEntry, 0, len(o.RTT))
	for k, d := range o.RTT {
		entries = append(entries, RTTEntry{A: k.A, B: k.B, Micros: d.Microseconds()})
	}
	slices.SortFunc(entries, func(a, b RTTEntry) int {
		if a.A != b.A {
			if a.A < b.A {
				return -1
			}
			return 1
		}
		if a.B < b.B {
			return -1
		} else if a.B > b.B {
			return 1
		}
		return 0
	})
	p.rttAt, p.rttPend, p.rttPEp = o.Now, true, o.Table.RTTEpoch
	return Command{Op: OpSetRTT, Epoch: o.Table.RTTEpoch, Origin: OriginPolicy, At: o.Now, RTT: entries,
		Reason: "measured RTT changed"}, true
}

// failoverOrder ranks the other regions as failover targets of r: by the
// leader's measured matrix, else the committed one, else the static
// estimate from the regions' locations. The result is committed, so every
// node uses the leader's choice (notes/federation.md §2).
func failoverOrder(r topology.RegionID, regions []topology.RegionID, measured steering.Matrix, t Table) []topology.RegionID {
	m := measured
	if len(m) == 0 {
		m = t.Matrix()
	}
	return steering.FailoverOrder(r, regions, m, steering.EstimatedMatrix())
}
