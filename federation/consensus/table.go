package consensus

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/steering"
	"github.com/rendezvous-core/rendezvous/topology"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrStaleEpoch is returned (by Apply, through the proposer) when a
	// command's expected epoch is not the region's current epoch: someone
	// else changed the region first. Re-read the table and decide again.
	ErrStaleEpoch = errors.New("consensus: stale epoch")
	// ErrTransition is returned when a command does not apply to the
	// region's current state (e.g. restore of an active region).
	ErrTransition = errors.New("consensus: invalid transition")
	// ErrUnknownRegion is returned for a command naming a region the
	// federation does not have.
	ErrUnknownRegion = errors.New("consensus: unknown region")
	// ErrLastActive is returned when failing or draining a region would
	// leave no active region.
	ErrLastActive = errors.New("consensus: would leave no active region")
	// ErrNotLeader is returned by operator commands on a follower; the
	// error is a *NotLeaderError naming the leader.
	ErrNotLeader = errors.New("consensus: not the leader")
	// ErrNoLeader is returned when no leader is known (election running,
	// or this node is in a minority partition).
	ErrNoLeader = errors.New("consensus: no leader")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("consensus: closed")
)

// StaleEpochError carries the epochs of an ErrStaleEpoch rejection.
type StaleEpochError struct {
	Region            topology.RegionID
	Expected, Current uint64
}

func (e *StaleEpochError) Error() string {
	return fmt.Sprintf("consensus: stale epoch for %s: command expected %d, table has %d", e.Region, e.Expected, e.Current)
}

// Unwrap makes errors.Is(err, ErrStaleEpoch) true.
func (e *StaleEpochError) Unwrap() error { return ErrStaleEpoch }

// NotLeaderError is returned by operator commands sent to a follower. The
// caller forwards the request to the leader (its API address is in the
// leader's membership metadata) or reports it.
type NotLeaderError struct {
	LeaderID, LeaderAddr string // empty when no leader is known
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "consensus: not the leader, and no leader is known"
	}
	return fmt.Sprintf("consensus: not the leader; leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

// Unwrap makes errors.Is work with ErrNotLeader (and ErrNoLeader when no
// leader is known).
func (e *NotLeaderError) Unwrap() []error {
	if e.LeaderID == "" {
		return []error{ErrNotLeader, ErrNoLeader}
	}
	return []error{ErrNotLeader}
}

// Origin says who decided a region's current state.
type Origin string

// Origins.
const (
	OriginPolicy   Origin = "policy"   // the leader's policy loop (membership)
	OriginOperator Origin = "operator" // drain/failover/restore/rebalance by a person or tool
)

// Region is one region's committed row.
type Region struct {
	State steering.State `json:"state"`
	// Epoch increases by one on every command applied to the region.
	// Commands carry the epoch they expect (compare-and-set).
	Epoch  uint64    `json:"epoch"`
	Since  time.Time `json:"since"` // when the current state was decided (proposer's clock)
	Reason string    `json:"reason,omitempty"`
	Origin Origin    `json:"origin,omitempty"`
	// FailoverTo is where the region's devices go while it is failed or
	// draining, best first (committed by the leader).
	FailoverTo []topology.RegionID `json:"failover_to,omitempty"`
	// Rebalances counts operator rebalances of the region; re-homing moves
	// devices back to it when it increases.
	Rebalances uint64 `json:"rebalances,omitempty"`
}

// RTTEntry is one pair of the committed RTT matrix.
type RTTEntry struct {
	A, B   topology.RegionID
	Micros int64 `json:"us"`
}

// Table is the routing table: what every node routes from.
type Table struct {
	Regions map[topology.RegionID]Region `json:"regions"`
	// RTT is the region×region median RTT matrix last committed by the
	// leader (steering.Input.Measured), RTTEpoch its version.
	RTT      []RTTEntry `json:"rtt,omitempty"`
	RTTEpoch uint64     `json:"rtt_epoch,omitempty"`
	// Index is the raft log index of the last command applied.
	Index uint64 `json:"index"`
}

// NewTable returns the initial table: every region active at epoch 0.
func NewTable(regions []topology.RegionID) Table {
	t := Table{Regions: make(map[topology.RegionID]Region, len(regions))}
	for _, r := range regions {
		t.Regions[r] = Region{State: steering.StateActive}
	}
	return t
}

// Clone returns a deep copy.
func (t Table) Clone() Table {
	c := t
	c.Regions = maps.Clone(t.Regions)
	for k, v := range c.Regions {
		v.FailoverTo = slices.Clone(v.FailoverTo)
		c.Regions[k] = v
	}
	c.RTT = slices.Clone(t.RTT)
	return c
}

// Steering returns the table as steering.Decide consumes it.
func (t Table) Steering() steering.Table {
	st := make(steering.Table, len(t.Regions))
	for r, row := range t.Regions {
		st[r] = steering.RegionStatus{State: row.State, FailoverTo: slices.Clone(row.FailoverTo)}
	}
	return st
}

// Matrix returns the committed RTT matrix for steering.Input.Measured.
func (t Table) Matrix() steering.Matrix {
	m := make(steering.Matrix, len(t.RTT))
	for _, e := range t.RTT {
		m[steering.MakePair(e.A, e.B)] = time.Duration(e.Micros) * time.Microsecond
	}
	return m
}

// Op is a command's operation.
type Op string

// Operations.
const (
	OpFail      Op = "fail"      // active|draining → failed
	OpDrain     Op = "drain"     // active → draining
	OpRestore   Op = "restore"   // failed|draining → active
	OpRebalance Op = "rebalance" // active; devices are moved back to it
	OpSetRTT    Op = "set-rtt"   // replace the committed RTT matrix
)

// Command is one raft log entry. It carries the epoch it expects and
// applies as a compare-and-set, so an ambiguous Apply (ErrLeadershipLost
// may still commit, notes/federation.md §3.1) retried by a new leader
// cannot apply twice.
type Command struct {
	Op     Op                `json:"op"`
	Region topology.RegionID `json:"region,omitempty"`
	// Epoch is the region's epoch the proposer saw (RTTEpoch for set-rtt).
	Epoch      uint64              `json:"epoch"`
	FailoverTo []topology.RegionID `json:"failover_to,omitempty"`
	Reason     string              `json:"reason,omitempty"`
	Origin     Origin              `json:"origin,omitempty"`
	// At is the proposer's clock when it decided. The FSM records it as
	// Since; it is in the log, so every node applies the same value.
	At  time.Time  `json:"at"`
	RTT []RTTEntry `json:"rtt,omitempty"`
}

// Encode returns the command's log bytes.
func (c Command) Encode() ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("consensus: encode %s command: %w", c.Op, err)
	}
	return b, nil
}

// DecodeCommand parses log bytes.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("consensus: decode command %q: %w", truncate(b), err)
	}
	return c, nil
}

func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "…"
	}
	return string(b)
}

// Apply applies c to the table at log index, returning the new table (t is
// not modified) or the reason it was rejected. A rejected command leaves
// the table unchanged except for Index. It is deterministic: it reads no
// clock and no state outside t and c (Raft paper §5.3: every state machine
// applies the same commands in the same order and must reach the same
// state).
func (t Table) Apply(index uint64, c Command) (Table, error) {
	n := t.Clone()
	n.Index = index
	if c.Op == OpSetRTT {
		if c.Epoch != t.RTTEpoch {
			return n, &StaleEpochError{Expected: c.Epoch, Current: t.RTTEpoch}
		}
		n.RTT = slices.Clone(c.RTT)
		n.RTTEpoch++
		return n, nil
	}
	row, ok := t.Regions[c.Region]
	if !ok {
		return n, fmt.Errorf("%w %q", ErrUnknownRegion, c.Region)
	}
	if c.Epoch != row.Epoch {
		return n, &StaleEpochError{Region: c.Region, Expected: c.Epoch, Current: row.Epoch}
	}
	switch c.Op {
	case OpFail:
		if row.State != steering.StateActive && row.State != steering.StateDraining {
			return n, fmt.Errorf("%w: fail %s while %s", ErrTransition, c.Region, row.State)
		}
		if row.State == steering.StateActive && t.active() <= 1 {
			return n, fmt.Errorf("%w: fail %s", ErrLastActive, c.Region)
		}
		row.State = steering.StateFailed
	case OpDrain:
		if row.State != steering.StateActive {
			return n, fmt.Errorf("%w: drain %s while %s", ErrTransition, c.Region, row.State)
		}
		if t.active() <= 1 {
			return n, fmt.Errorf("%w: drain %s", ErrLastActive, c.Region)
		}
		row.State = steering.StateDraining
	case OpRestore:
		if row.State != steering.StateFailed && row.State != steering.StateDraining {
			return n, fmt.Errorf("%w: restore %s while %s", ErrTransition, c.Region, row.State)
		}
		row.State = steering.StateActive
		c.FailoverTo = nil
	case OpRebalance:
		if row.State != steering.StateActive {
			return n, fmt.Errorf("%w: rebalance %s while %s", ErrTransition, c.Region, row.State)
		}
		row.Rebalances++
		c.FailoverTo = row.FailoverTo
	default:
		return n, fmt.Errorf("%w: unknown op %q", ErrTransition, c.Op)
	}
	row.Epoch++
	row.Since = c.At
	row.Reason = c.Reason
	row.Origin = c.Origin
	row.FailoverTo = slices.Clone(c.FailoverTo)
	n.Regions[c.Region] = row
	return n, nil
}

func (t Table) active() int {
	n := 0
	for _, r := range t.Regions {
		if r.State == steering.StateActive {
			n++
		}
	}
	return n
}

// Sorted returns the table's regions in lexical order (for display).
func (t Table) Sorted() []topology.RegionID {
	return slices.Sorted(maps.Keys(t.Regions))
}
