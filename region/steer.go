package region

import (
	"context"
	"fmt"
	"strings"

	"github.com/rendezvous-core/rendezvous/federation/consensus"
	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/federation/steering"
	"github.com/rendezvous-core/rendezvous/topology"
)

// committedSteerer is the HSS's steering seam (hss.Steerer) backed by the
// raft-applied routing table: every node decides the same from the same
// committed state (DESIGN.md §4), never from its own membership view.
type committedSteerer struct {
	cons *consensus.Node
	// estimated is the static region×region RTT estimate; it depends only
	// on topology, so it is computed once, not per ULR.
	estimated steering.Matrix
}

func newCommittedSteerer(cons *consensus.Node) *committedSteerer {
	return &committedSteerer{cons: cons, estimated: steering.EstimatedMatrix()}
}

func (s *committedSteerer) Steer(_ context.Context, imsi topology.IMSI, sub registry.Subscriber, visited topology.PLMN, apn string) (topology.RegionID, []string, error) {
	// A non-geographic MCC (001 test networks, 901 international) has no
	// ranking: steering then prefers the subscriber's home region.
	var static []steering.Candidate
	if est, err := topology.Rank(visited.MCC); err == nil {
		static = steering.FromEstimates(est)
	}
	tbl := s.cons.Table()
	// A device whose nearest region failed goes to *its own* next-nearest
	// healthy region (DESIGN.md §2), not to the failed region's failover
	// order: the ranking is as deterministic as the committed order (a pure
	// function of topology and the committed RTT matrix), and nearer for
	// the device. The committed FailoverTo stays in the table for operators.
	st := tbl.Steering()
	for r, row := range st {
		row.FailoverTo = nil
		st[r] = row
	}
	d := steering.Decide(steering.Input{
		IMSI:      imsi,
		Visited:   visited,
		APN:       strings.ToLower(apn),
		Static:    static,
		Table:     st,
		Measured:  tbl.Matrix(),
		Estimated: s.estimated,
		Fallback:  sub.HomeRegion,
		Policy: steering.Policy{
			Pin:        sub.Policy.Pin,
			HomeRouted: sub.Policy.HomeRouted,
			HomeRegion: sub.HomeRegion,
		},
	})
	if d.Region == "" {
		return "", d.Reasons, fmt.Errorf("region: steer %s in %s: no region can serve (%s)", imsi, visited, strings.Join(d.Reasons, "; "))
	}
	return d.Region, d.Reasons, nil
}
