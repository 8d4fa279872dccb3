package region

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/consensus"
	"github.com/rendezvous-core/rendezvous/region/opapi"
	"github.com/rendezvous-core/rendezvous/topology"
)

// backend answers the operator API from the node's components.
type backend struct {
	n *Node

	mu       sync.Mutex // guards following fields
	lastPkts uint64
	lastAt   time.Time
	pps      float64
}

func (b *backend) Status(context.Context) (opapi.Status, error) {
	n := b.n
	st := opapi.Status{
		Node:    n.self.Name,
		Region:  n.self.Region,
		Version: n.cfg.Version,
		Time:    time.Now().UTC(),
	}
	st.Leader, _ = n.cons.Leader()
	for _, m := range n.members.Members() {
		st.Members = append(st.Members, opapi.Member{
			Name: m.Name, Region: m.Region, Role: string(m.Role), State: m.State.String(), Addr: m.Addr.String(),
		})
	}
	tbl := n.cons.Table()
	for _, r := range tbl.Sorted() {
		row := tbl.Regions[r]
		st.Table = append(st.Table, opapi.Route{
			Region: r, State: row.State.String(), Epoch: row.Epoch, Since: row.Since, Reason: row.Reason,
			FailoverTo: row.FailoverTo,
		})
		st.Epoch += row.Epoch
	}
	st.RTT = map[topology.RegionID]map[topology.RegionID]float64{}
	for pair, d := range n.members.RTTMatrix() {
		for _, ab := range [][2]topology.RegionID{{pair.A, pair.B}, {pair.B, pair.A}} {
			if st.RTT[ab[0]] == nil {
				st.RTT[ab[0]] = map[topology.RegionID]float64{}
			}
			st.RTT[ab[0]][ab[1]] = float64(d) / float64(time.Millisecond)
		}
	}
	if n.self.Region != "" {
		st.Regions = append(st.Regions, opapi.Load{
			Region: n.self.Region, Attached: n.Sessions(), Sessions: n.Sessions(), PacketsPerSec: b.packetsPerSec(),
		})
	}
	if n.rehomer != nil {
		st.Rehoming = n.rehomer.Progress()
	}
	if n.store != nil {
		st.Degraded = n.store.Degraded()
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Name < st.Members[j].Name })
	return st, nil
}

// packetsPerSec is the user plane's packet rate since the previous call.
func (b *backend) packetsPerSec() float64 {
	s := b.n.BreakoutStats()
	total := s.PacketsUp + s.PacketsDown
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.lastAt.IsZero() {
		if dt := now.Sub(b.lastAt).Seconds(); dt > 0.2 {
			b.pps = float64(total-b.lastPkts) / dt
		}
	}
	b.lastPkts, b.lastAt = total, now
	return b.pps
}

func (b *backend) Act(ctx context.Context, region topology.RegionID, a opapi.Action) (opapi.ActionResult, error) {
	n := b.n
	reason := "operator " + string(a) + " via " + n.self.Name
	var row consensus.Region
	var err error
	switch a {
	case opapi.Drain:
		row, err = n.cons.Drain(ctx, region, reason)
	case opapi.Failover:
		row, err = n.cons.Failover(ctx, region, reason)
	case opapi.Restore:
		row, err = n.cons.Restore(ctx, region, reason)
	case opapi.Rebalance:
		row, err = n.cons.Rebalance(ctx, region, reason)
	default:
		return opapi.ActionResult{}, fmt.Errorf("region: unknown action %q", a)
	}
	switch {
	case errors.Is(err, consensus.ErrUnknownRegion):
		return opapi.ActionResult{}, fmt.Errorf("%w: %v", opapi.ErrUnknownRegion, err)
	case errors.Is(err, consensus.ErrNotLeader):
		return b.forward(ctx, region, a)
	case err != nil:
		return opapi.ActionResult{}, err
	}
	return opapi.ActionResult{Region: region, Action: a, Epoch: row.Epoch, State: row.State.String()}, nil
}

// forward sends an action to the raft leader's API: only the leader
// proposes (DESIGN.md §2), but an operator may ask any node.
func (b *backend) forward(ctx context.Context, region topology.RegionID, a opapi.Action) (opapi.ActionResult, error) {
	leader, _ := b.n.cons.Leader()
	if leader == "" {
		return opapi.ActionResult{}, fmt.Errorf("%w: no leader (no quorum?)", opapi.ErrNotLeader)
	}
	m, ok := b.n.members.Member(leader)
	if !ok || m.Meta.Addrs["api"] == "" {
		return opapi.ActionResult{}, fmt.Errorf("%w: leader %s has no known API address", opapi.ErrNotLeader, leader)
	}
	c := &opapi.Client{Base: "http://" + m.Meta.Addrs["api"], Token: b.n.cfg.APIToken}
	res, err := c.Act(ctx, region, a)
	if err != nil {
		return opapi.ActionResult{}, fmt.Errorf("region: forward %s %s to leader %s: %w", a, region, leader, err)
	}
	return res, nil
}
