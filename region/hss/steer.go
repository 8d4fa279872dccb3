package hss

import (
	"context"
	"errors"
	"fmt"

	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/topology"
)

// Steerer picks the region whose PGW the ULA names for one APN of a
// subscriber attached in a visited PLMN (DESIGN.md §2 "4G attach"). The
// federation implements it from the raft-committed routing table;
// NearestSteerer is the stand-alone implementation. It must be safe for
// concurrent use and should not block: it runs inside every ULR.
type Steerer interface {
	Steer(ctx context.Context, imsi topology.IMSI, sub registry.Subscriber, visited topology.PLMN, apn string) (region topology.RegionID, reasons []string, err error)
}

// ErrNoRegion is returned by NearestSteerer when no region is healthy.
var ErrNoRegion = errors.New("hss: no healthy region")

// NearestSteerer steers to the nearest healthy region of the visited PLMN's
// country (topology.Rank), after the subscriber's pin and home routing
// (registry.Policy). It is the seam the federation's committed table
// replaces.
type NearestSteerer struct {
	// Healthy reports whether a region may be steered to. Nil: all are.
	Healthy func(topology.RegionID) bool
	// Fallback is used when the visited MCC is not geographic (test PLMNs
	// such as 001/01, 999): the home region if healthy, else Fallback, else
	// the first healthy region.
	Fallback topology.RegionID
}

func (n NearestSteerer) healthy(r topology.RegionID) bool {
	if r == "" {
		return false
	}
	if _, ok := topology.LookupRegion(r); !ok {
		return false
	}
	return n.Healthy == nil || n.Healthy(r)
}

// Steer implements Steerer.
func (n NearestSteerer) Steer(_ context.Context, _ topology.IMSI, sub registry.Subscriber, visited topology.PLMN, _ string) (topology.RegionID, []string, error) {
	if p := sub.Policy.Pin; p != "" {
		if n.healthy(p) {
			return p, []string{"pinned to " + string(p)}, nil
		}
	}
	if sub.Policy.HomeRouted && n.healthy(sub.HomeRegion) {
		return sub.HomeRegion, []string{"home-routed to " + string(sub.HomeRegion)}, nil
	}
	ranked, err := topology.Rank(visited.MCC)
	if err != nil {
		for _, r := range []topology.RegionID{sub.HomeRegion, n.Fallback} {
			if n.healthy(r) {
				return r, []string{fmt.Sprintf("MCC %s not geographic: fallback %s", visited.MCC, r)}, nil
			}
		}
		for _, r := range topology.Regions() {
			if n.healthy(r.ID) {
				return r.ID, []string{fmt.Sprintf("MCC %s not geographic: first healthy %s", visited.MCC, r.ID)}, nil
			}
		}
		return "", nil, ErrNoRegion
	}
	var reasons []string
	for _, e := range ranked {
		if n.healthy(e.Region) {
			return e.Region, append(reasons, fmt.Sprintf("nearest healthy to MCC %s: %s (%.0f km, ~%v)", visited.MCC, e.Region, e.KM, e.RTT)), nil
		}
		reasons = append(reasons, fmt.Sprintf("%s unhealthy", e.Region))
	}
	return "", reasons, ErrNoRegion
}
