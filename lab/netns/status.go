package netns

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rendezvous-core/rendezvous/lab"
	"github.com/rendezvous-core/rendezvous/region/opapi"
	"github.com/rendezvous-core/rendezvous/topology"
)

// Status reads every running node's operator API (a node that does not
// answer is left out).
func (c *Cluster) Status(ctx context.Context) map[string]opapi.Status {
	out := map[string]opapi.Status{}
	for _, n := range c.Nodes() {
		if !c.Running(n) {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := c.API(n).Status(sctx)
		cancel()
		if err == nil {
			out[n] = st
		}
	}
	return out
}

// Sessions returns each region's session count as its own node reports it.
func Sessions(st map[string]opapi.Status) map[topology.RegionID]int {
	out := map[topology.RegionID]int{}
	for _, s := range st {
		for _, l := range s.Regions {
			if l.Region == s.Region {
				out[l.Region] += l.Sessions
			}
		}
	}
	return out
}

// Snapshot renders the nodes' status as the lab's status table: the
// routing table from the first node that knows a leader, sessions and
// packets per second from each region's own node.
func (c *Cluster) Snapshot(ctx context.Context) lab.Snapshot {
	st := c.Status(ctx)
	s := lab.Snapshot{Time: time.Now()}
	rows := map[topology.RegionID]*lab.RegionStatus{}
	var rehoming []string
	for _, r := range topology.Regions() {
		rows[r.ID] = &lab.RegionStatus{Region: r.ID, State: "unknown"}
	}
	for _, n := range c.fed.Deployment.Nodes {
		if rs, ok := rows[n.Region]; ok {
			rs.Members++
		}
	}
	for _, name := range c.Nodes() {
		ns, ok := st[name]
		if !ok {
			continue
		}
		if s.Leader == "" && ns.Leader != "" {
			s.Leader = ns.Leader
			for _, r := range ns.Table {
				if rs, ok := rows[r.Region]; ok {
					rs.State, rs.Epoch = r.State, r.Epoch
				}
			}
		}
		rs, ok := rows[ns.Region]
		if !ok {
			continue
		}
		rs.MembersAlive++
		for _, l := range ns.Regions {
			if l.Region == ns.Region {
				rs.Sessions += l.Sessions
				rs.PacketsPerSec += l.PacketsPerSec
			}
		}
		if p := ns.Rehoming; p.Total > 0 {
			rehoming = append(rehoming, fmt.Sprintf("%s %d/%d (%d failed)", name, p.Done, p.Total, p.Failed))
		}
	}
	s.Rehoming = strings.Join(rehoming, ", ")
	for _, rs := range rows {
		s.Regions = append(s.Regions, *rs)
	}
	sort.Slice(s.Regions, func(i, j int) bool { return s.Regions[i].Region < s.Regions[j].Region })
	return s
}
