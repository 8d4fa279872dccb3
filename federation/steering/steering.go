package steering

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

// State is a region's state in the committed routing table.
//
// The zero value means "not in the table", which steering treats as active:
// the FSM starts with every region active at epoch 0 and only records a
// region once a command changed it.
type State uint8

// Region states (DESIGN.md §2 "Region failure").
const (
	StateActive   State = iota + 1 // steered to
	StateDraining                  // alive, takes no new devices; existing ones are moved away
	StateFailed                    // dead by committed decision; nothing is steered to it
)

func (s State) String() string {
	switch s {
	case 0:
		return "unknown"
	case StateActive:
		return "active"
	case StateDraining:
		return "draining"
	case StateFailed:
		return "failed"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// ParseState is the inverse of State.String for the three real states.
func ParseState(s string) (State, error) {
	switch s {
	case "active":
		return StateActive, nil
	case "draining":
		return StateDraining, nil
	case "failed":
		return StateFailed, nil
	}
	return 0, fmt.Errorf("steering: unknown region state %q", s)
}

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *State) UnmarshalText(b []byte) error {
	if string(b) == "unknown" {
		*s = 0
		return nil
	}
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// RegionStatus is what steering needs of one region's committed row.
type RegionStatus struct {
	State State
	// FailoverTo is the committed order of regions that take this region's
	// devices while it is failed or draining, best first. The raft leader
	// computed it (FailoverOrder) and wrote it into the command, so every
	// node uses the same targets although their RTT views differ
	// (notes/federation.md §2 "Recommendation").
	FailoverTo []topology.RegionID
}

// Table is the committed routing table as steering sees it. A region absent
// from the table is active. The caller owns the map; Decide only reads it.
type Table map[topology.RegionID]RegionStatus

func (t Table) state(r topology.RegionID) State {
	s, ok := t[r]
	if !ok || s.State == 0 {
		return StateActive
	}
	return s.State
}

// Candidate is one region of the static ranking for a visited network:
// topology.Rank's Estimate reduced to what steering uses.
type Candidate struct {
	Region topology.RegionID
	RTT    time.Duration // estimated RTT from the visited country to the region
}

// Pair is an unordered pair of regions, key of a Matrix. Use MakePair.
type Pair struct{ A, B topology.RegionID }

// MakePair returns the canonical (sorted) pair of a and b.
func MakePair(a, b topology.RegionID) Pair {
	if b < a {
		a, b = b, a
	}
	return Pair{a, b}
}

// Matrix is a symmetric region×region RTT matrix. Missing pairs are unknown.
type Matrix map[Pair]time.Duration

// Get returns the RTT between a and b and whether it is known.
func (m Matrix) Get(a, b topology.RegionID) (time.Duration, bool) {
	d, ok := m[MakePair(a, b)]
	return d, ok && d > 0
}

// Policy is the operator's and the subscriber's steering policy. Precedence,
// most specific first: Pin, HomeRouted, APN override, country override,
// nearest region. A preferred region that is not active is replaced by its
// committed failover order, then by the ranking (see Decide).
type Policy struct {
	Pin        topology.RegionID // per-subscriber pin (registry Policy.Pin)
	HomeRouted bool              // per-subscriber: steer to HomeRegion
	HomeRegion topology.RegionID
	// APNOverride steers sessions of an APN to a region. Keys are
	// lower-case network identifiers; Input.APN is matched case-insensitively
	// (APNs are case-insensitive, TS 23.003 §9.1).
	APNOverride map[string]topology.RegionID
	// CountryOverride steers devices visiting a country (by MCC) to a region.
	CountryOverride map[topology.MCC]topology.RegionID
}

// Input is everything a steering decision depends on. Decide is a pure
// function of it.
type Input struct {
	IMSI    topology.IMSI // for reasons only
	Visited topology.PLMN // visited PLMN; only its MCC is used
	APN     string
	// Static is topology.Rank(Visited.MCC), nearest first. Required unless a
	// policy names a region.
	Static []Candidate
	// Table is the committed routing table (consensus). Routing decisions
	// come only from it, never from a node's own membership view.
	Table Table
	// Measured is the region×region median RTT matrix, optional. Pass the
	// committed one (consensus Table.RTT) so that every node decides the
	// same; a node-local matrix breaks that guarantee.
	Measured Matrix
	// Estimated is the static region×region RTT estimate (topology), needed
	// to calibrate Static with Measured. Optional.
	Estimated Matrix
	Policy    Policy
	// Fallback is preferred when Static is empty (a non-geographic MCC
	// such as the test PLMN 001/01, for which topology.Rank fails): e.g.
	// the subscriber's home region. Without it, the first region of the
	// table (lexical order) is.
	Fallback topology.RegionID
}

// Decision is the region that serves the device, with the reasons in the
// order they were considered.
type Decision struct {
	Region  topology.RegionID
	Reasons []string
	// Degraded is set when no region is active: Region is then the best
	// draining region, or the nearest region if every region failed.
	Degraded bool
}

// calibrationMargin: the measured refinement reorders two regions only if
// the refined estimates differ by more than this fraction, so that small
// measurement noise never flips the ranking.
const calibrationMargin = 0.10

// Calibration factor bounds: a region's measured connectivity may make it
// look at most 3× worse or 2× better than geography says.
const minFactor, maxFactor = 0.5, 3.0

// Decide returns the region that serves a device. It is deterministic: the
// same Input gives the same Decision on every node.
//
// How the measured RTT matrix refines the static estimate: the static
// ranking estimates visited→region RTT from great-circle distance. A region
// whose measured RTT to the other regions is k times its estimated RTT to
// them (k = median over the other regions of measured/estimated, clamped to
// [0.5, 3]) is assumed to be k times slower from everywhere (e.g. poor
// transit), so its static estimate is multiplied by k. Regions are then
// reordered by the refined estimate, but a region overtakes one ranked
// before it only when it is more than 10 % better. Without both matrices
// the static order is used as is.
func Decide(in Input) Decision {
	var d Decision
	ranking := refine(in, &d)

	// The preferred region by policy, most specific first.
	pref, why := topology.RegionID(""), ""
	switch {
	case in.Policy.Pin != "":
		pref, why = in.Policy.Pin, "subscriber pinned to "+string(in.Policy.Pin)
	case in.Policy.HomeRouted && in.Policy.HomeRegion != "":
		pref, why = in.Policy.HomeRegion, "home-routed to "+string(in.Policy.HomeRegion)
	case in.APN != "" && in.Policy.APNOverride[strings.ToLower(in.APN)] != "":
		r := in.Policy.APNOverride[strings.ToLower(in.APN)]
		pref, why = r, fmt.Sprintf("APN %q overridden to %s", in.APN, r)
	case in.Visited.MCC != "" && in.Policy.CountryOverride[in.Visited.MCC] != "":
		r := in.Policy.CountryOverride[in.Visited.MCC]
		pref, why = r, fmt.Sprintf("country MCC %s overridden to %s", in.Visited.MCC, r)
	case len(ranking) > 0:
		pref, why = ranking[0], fmt.Sprintf("nearest region to MCC %s is %s", in.Visited.MCC, ranking[0])
	case in.Fallback != "":
		pref, why = in.Fallback, fmt.Sprintf("no ranking for MCC %s: fallback %s", in.Visited.MCC, in.Fallback)
	case len(in.Table) > 0:
		r := candidates(nil, in.Table)[0]
		pref, why = r, fmt.Sprintf("no ranking for MCC %s and no fallback: first region %s", in.Visited.MCC, r)
	}
	if pref == "" {
		d.Reasons = append(d.Reasons, "no ranking and no policy: no region")
		d.Degraded = true
		return d
	}
	d.Reasons = append(d.Reasons, why)

	st := in.Table.state(pref)
	if st == StateActive {
		d.Region = pref
		return d
	}
	d.Reasons = append(d.Reasons, fmt.Sprintf("%s is %s", pref, st))

	// The committed failover order of the preferred region comes first:
	// it is the leader's choice and identical on every node.
	for _, r := range in.Table[pref].FailoverTo {
		if r != pref && in.Table.state(r) == StateActive {
			d.Region = r
			d.Reasons = append(d.Reasons, fmt.Sprintf("committed failover target of %s is %s", pref, r))
			return d
		}
	}
	// Then the ranking (nearest first), then any other region the table
	// knows, in a deterministic order.
	order := candidates(ranking, in.Table)
	for _, r := range order {
		if r != pref && in.Table.state(r) == StateActive {
			d.Region = r
			d.Reasons = append(d.Reasons, fmt.Sprintf("next active region by ranking is %s", r))
			return d
		}
	}
	// No active region: a draining region is alive, so prefer one over a
	// failed region.
	d.Degraded = true
	if in.Table.state(pref) == StateDraining {
		d.Region = pref
		d.Reasons = append(d.Reasons, "no active region: staying on draining "+string(pref))
		return d
	}
	for _, r := range append(slices.Clone(in.Table[pref].FailoverTo), order...) {
		if in.Table.state(r) == StateDraining {
			d.Region = r
			d.Reasons = append(d.Reasons, "no active region: using draining "+string(r))
			return d
		}
	}
	d.Region = pref
	d.Reasons = append(d.Reasons, "no healthy region: using "+string(pref))
	return d
}

// candidates returns the ranking followed by the table's other regions in
// lexical order.
func candidates(ranking []topology.RegionID, t Table) []topology.RegionID {
	out := slices.Clone(ranking)
	var rest []topology.RegionID
	for r := range t {
		if !slices.Contains(out, r) {
			rest = append(rest, r)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// refine returns the regions of in.Static, reordered by the measured RTT
// calibration when both matrices are present (see Decide).
func refine(in Input, d *Decision) []topology.RegionID {
	out := make([]topology.RegionID, 0, len(in.Static))
	for _, c := range in.Static {
		out = append(out, c.Region)
	}
	if len(in.Measured) == 0 || len(in.Estimated) == 0 || len(in.Static) < 2 {
		return out
	}
	regions := slices.Clone(out)
	type refined struct {
		region topology.RegionID
		rtt    float64
	}
	rs := make([]refined, len(in.Static))
	changed := false
	for i, c := range in.Static {
		k := factor(c.Region, regions, in.Measured, in.Estimated)
		if k != 1 {
			changed = true
		}
		rs[i] = refined{c.Region, float64(c.RTT) * k}
	}
	if !changed {
		return out
	}
	// Insertion sort with a margin: stable and deterministic; a later region
	// moves ahead only when clearly better.
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].rtt < rs[j-1].rtt*(1-calibrationMargin); j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
	reordered := false
	for i := range rs {
		if rs[i].region != out[i] {
			reordered = true
		}
		out[i] = rs[i].region
	}
	if reordered {
		d.Reasons = append(d.Reasons, fmt.Sprintf("measured RTT reordered the static ranking to %v", out))
	}
	return out
}

// factor is region r's calibration factor: the median over the other
// regions s of measured(r,s)/estimated(r,s), clamped; 1 when unknown.
func factor(r topology.RegionID, regions []topology.RegionID, measured, estimated Matrix) float64 {
	var ratios []float64
	for _, s := range regions {
		if s == r {
			continue
		}
		m, ok1 := measured.Get(r, s)
		e, ok2 := estimated.Get(r, s)
		if ok1 && ok2 {
			ratios = append(ratios, float64(m)/float64(e))
		}
	}
	if len(ratios) == 0 {
		return 1
	}
	sort.Float64s(ratios)
	k := ratios[len(ratios)/2]
	if len(ratios)%2 == 0 {
		k = (ratios[len(ratios)/2-1] + ratios[len(ratios)/2]) / 2
	}
	return min(max(k, minFactor), maxFactor)
}

// FailoverOrder is the order in which the other regions take over region
// failed's devices, best first: by measured RTT from failed when known
// (the RTT between the two regions' cores approximates the extra path a
// device of the failed region's catchment pays), else by the estimated
// RTT, else in the order given. Only regions listed in regions are
// considered; failed itself is excluded. The raft leader calls it and
// commits the result; nodes never compute it themselves.
func FailoverOrder(failed topology.RegionID, regions []topology.RegionID, measured, estimated Matrix) []topology.RegionID {
	type c struct {
		r   topology.RegionID
		rtt time.Duration
		ok  bool
		i   int
	}
	var cs []c
	for i, r := range regions {
		if r == failed || slices.ContainsFunc(cs, func(x c) bool { return x.r == r }) {
			continue
		}
		d, ok := measured.Get(failed, r)
		if !ok {
			d, ok = estimated.Get(failed, r)
		}
		cs = append(cs, c{r, d, ok, i})
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].ok != cs[j].ok {
			return cs[i].ok
		}
		if cs[i].ok && cs[i].rtt != cs[j].rtt {
			return cs[i].rtt < cs[j].rtt
		}
		return cs[i].i < cs[j].i
	})
	out := make([]topology.RegionID, len(cs))
	for i, x := range cs {
		out[i] = x.r
	}
	return out
}
