package steering

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

const (
	JP = topology.JP
	US = topology.US
	DE = topology.DE
	AU = topology.AU
)

var all = []topology.RegionID{JP, US, DE, AU}

// rankFR is a plausible static ranking for France (MCC 208).
var rankFR = []Candidate{{DE, 15 * time.Millisecond}, {US, 110 * time.Millisecond}, {JP, 230 * time.Millisecond}, {AU, 290 * time.Millisecond}}

// rankID is a plausible static ranking for Indonesia (MCC 510).
var rankID = []Candidate{{AU, 80 * time.Millisecond}, {JP, 90 * time.Millisecond}, {US, 180 * time.Millisecond}, {DE, 200 * time.Millisecond}}

func TestDecide(t *testing.T) {
	fr := topology.PLMN{MCC: "208", MNC: "01"}
	id := topology.PLMN{MCC: "510", MNC: "10"}
	tests := []struct {
		name     string
		in       Input
		want     topology.RegionID
		degraded bool
		reason   string // substring of the last reason
	}{
		{"nearest", Input{Visited: fr, Static: rankFR}, DE, false, "nearest region to MCC 208 is DE"},
		{"nearest, empty table entry active", Input{Visited: fr, Static: rankFR, Table: Table{DE: {}}}, DE, false, "nearest"},
		{"nearest failed uses committed target", Input{Visited: fr, Static: rankFR,
			Table: Table{DE: {State: StateFailed, FailoverTo: []topology.RegionID{JP, US}}}}, JP, false, "committed failover target of DE is JP"},
		{"nearest draining uses committed target", Input{Visited: fr, Static: rankFR,
			Table: Table{DE: {State: StateDraining, FailoverTo: []topology.RegionID{US}}}}, US, false, "committed failover target"},
		{"committed target also failed: next in its order", Input{Visited: fr, Static: rankFR,
			Table: Table{DE: {State: StateFailed, FailoverTo: []topology.RegionID{US, JP}}, US: {State: StateFailed}}}, JP, false, "committed failover target of DE is JP"},
		{"no committed target: ranking", Input{Visited: fr, Static: rankFR,
			Table: Table{DE: {State: StateFailed}}}, US, false, "next active region by ranking is US"},
		{"pin", Input{Visited: fr, Static: rankFR, Policy: Policy{Pin: AU}}, AU, false, "pinned to AU"},
		{"pin to failed region falls back", Input{Visited: fr, Static: rankFR, Policy: Policy{Pin: AU},
			Table: Table{AU: {State: StateFailed, FailoverTo: []topology.RegionID{JP}}}}, JP, false, "committed failover target of AU is JP"},
		{"pin beats home-routed", Input{Visited: fr, Static: rankFR, Policy: Policy{Pin: AU, HomeRouted: true, HomeRegion: JP}}, AU, false, "pinned"},
		{"home-routed", Input{Visited: fr, Static: rankFR, Policy: Policy{HomeRouted: true, HomeRegion: JP}}, JP, false, "home-routed to JP"},
		{"home-routed without home region: nearest", Input{Visited: fr, Static: rankFR, Policy: Policy{HomeRouted: true}}, DE, false, "nearest"},
		{"APN override", Input{Visited: fr, Static: rankFR, APN: "iot.acme",
			Policy: Policy{APNOverride: map[string]topology.RegionID{"iot.acme": US}, CountryOverride: map[topology.MCC]topology.RegionID{"208": JP}}}, US, false, `APN "iot.acme" overridden to US`},
		{"other APN: country override", Input{Visited: fr, Static: rankFR, APN: "internet",
			Policy: Policy{APNOverride: map[string]topology.RegionID{"iot.acme": US}, CountryOverride: map[topology.MCC]topology.RegionID{"208": JP}}}, JP, false, "country MCC 208 overridden to JP"},
		{"country override for another country: nearest", Input{Visited: id, Static: rankID,
			Policy: Policy{CountryOverride: map[topology.MCC]topology.RegionID{"208": JP}}}, AU, false, "nearest region to MCC 510 is AU"},
		{"home-routed beats APN override", Input{Visited: fr, Static: rankFR, APN: "iot.acme",
			Policy: Policy{HomeRouted: true, HomeRegion: AU, APNOverride: map[string]topology.RegionID{"iot.acme": US}}}, AU, false, "home-routed"},
		{"all others failed: draining preferred over failed", Input{Visited: fr, Static: rankFR,
			Table: Table{DE: {State: StateFailed}, US: {State: StateFailed}, JP: {State: StateDraining}, AU: {State: StateFailed}}}, JP, true, "using draining JP"},
		{"only the draining preferred region is alive", Input{Visited: fr, Static: rankFR,
			Table: Table{DE: {State: StateDraining}, US: {State: StateFailed}, JP: {State: StateFailed}, AU: {State: StateFailed}}}, DE, true, "staying on draining DE"},
		{"everything failed", Input{Visited: fr, Static: rankFR,
			Table: Table{DE: {State: StateFailed}, US: {State: StateFailed}, JP: {State: StateFailed}, AU: {State: StateFailed}}}, DE, true, "no healthy region"},
		{"no ranking, no policy", Input{Visited: fr}, "", true, "no region"},
		{"no ranking, pin", Input{Visited: fr, Policy: Policy{Pin: US}}, US, false, "pinned"},
		{"no ranking (MCC 001): fallback", Input{Visited: topology.PLMN{MCC: "001", MNC: "01"}, Fallback: JP,
			Table: Table{JP: {}, US: {}}}, JP, false, "no ranking for MCC 001: fallback JP"},
		{"no ranking, failed fallback: its committed target", Input{Visited: topology.PLMN{MCC: "001", MNC: "01"}, Fallback: JP,
			Table: Table{JP: {State: StateFailed, FailoverTo: []topology.RegionID{US}}, US: {}}}, US, false, "committed failover target of JP is US"},
		{"no ranking, no fallback: first active in table order", Input{Visited: topology.PLMN{MCC: "001", MNC: "01"},
			Table: Table{JP: {}, US: {}, AU: {State: StateFailed}}}, JP, false, "next active region by ranking is JP"},
		{"measured RTT reorders: AU's transit is 2x slower", Input{Visited: id, Static: rankID,
			Measured:  Matrix{MakePair(AU, JP): 240 * time.Millisecond, MakePair(AU, US): 380 * time.Millisecond, MakePair(AU, DE): 580 * time.Millisecond, MakePair(JP, US): 120 * time.Millisecond, MakePair(JP, DE): 230 * time.Millisecond, MakePair(US, DE): 100 * time.Millisecond},
			Estimated: Matrix{MakePair(AU, JP): 120 * time.Millisecond, MakePair(AU, US): 190 * time.Millisecond, MakePair(AU, DE): 290 * time.Millisecond, MakePair(JP, US): 120 * time.Millisecond, MakePair(JP, DE): 230 * time.Millisecond, MakePair(US, DE): 100 * time.Millisecond}},
			JP, false, "nearest region to MCC 510 is JP"},
		{"measured RTT within margin keeps the static order", Input{Visited: id, Static: rankID,
			Measured:  Matrix{MakePair(AU, JP): 126 * time.Millisecond, MakePair(AU, US): 195 * time.Millisecond, MakePair(JP, US): 120 * time.Millisecond},
			Estimated: Matrix{MakePair(AU, JP): 120 * time.Millisecond, MakePair(AU, US): 190 * time.Millisecond, MakePair(JP, US): 120 * time.Millisecond}},
			AU, false, "nearest region to MCC 510 is AU"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(tc.in)
			if got.Region != tc.want || got.Degraded != tc.degraded {
				t.Fatalf("Decide = %s degraded=%v (%q), want %s degraded=%v", got.Region, got.Degraded, got.Reasons, tc.want, tc.degraded)
			}
			if last := got.Reasons[len(got.Reasons)-1]; !strings.Contains(last, tc.reason) {
				t.Fatalf("last reason %q does not contain %q (all: %q)", last, tc.reason, got.Reasons)
			}
			// Deterministic: the same input gives the same decision.
			again := Decide(tc.in)
			if again.Region != got.Region || !slices.Equal(again.Reasons, got.Reasons) {
				t.Fatalf("not deterministic: %v vs %v", got, again)
			}
		})
	}
}

// TestDecideNeverFailedWhenActiveExists is the property test: over every
// combination of region states (3^4), random failover orders, rankings and
// policies, Decide never returns a failed or draining region while an active
// one exists, and returns a region iff it has something to go on.
func TestDecideNeverFailedWhenActiveExists(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	states := []State{StateActive, StateDraining, StateFailed}
	pick := func() topology.RegionID { return all[rng.IntN(len(all))] }
	for combo := 0; combo < 81; combo++ {
		for trial := 0; trial < 200; trial++ {
			tab := Table{}
			c := combo
			anyActive := false
			for _, r := range all {
				st := states[c%3]
				c /= 3
				var to []topology.RegionID
				for _, x := range rng.Perm(4)[:rng.IntN(4)] {
					to = append(to, all[x])
				}
				tab[r] = RegionStatus{State: st, FailoverTo: to}
				anyActive = anyActive || st == StateActive
			}
			var static []Candidate
			for _, x := range rng.Perm(4)[:1+rng.IntN(4)] {
				static = append(static, Candidate{all[x], time.Duration(rng.IntN(300)) * time.Millisecond})
			}
			var pol Policy
			switch rng.IntN(5) {
			case 0:
				pol.Pin = pick()
			case 1:
				pol.HomeRouted, pol.HomeRegion = true, pick()
			case 2:
				pol.APNOverride = map[string]topology.RegionID{"a": pick()}
			case 3:
				pol.CountryOverride = map[topology.MCC]topology.RegionID{"208": pick()}
			}
			in := Input{Visited: topology.PLMN{MCC: "208", MNC: "01"}, APN: "a", Static: static, Table: tab, Policy: pol}
			d := Decide(in)
			if d.Region == "" {
				t.Fatalf("no region for %+v", in)
			}
			if anyActive && tab.state(d.Region) != StateActive {
				t.Fatalf("Decide chose %s (%s) although an active region exists; table %+v reasons %q", d.Region, tab.state(d.Region), tab, d.Reasons)
			}
			if anyActive == d.Degraded {
				t.Fatalf("Degraded=%v with anyActive=%v", d.Degraded, anyActive)
			}
		}
	}
}

func TestFailoverOrder(t *testing.T) {
	measured := Matrix{MakePair(AU, JP): 120 * time.Millisecond, MakePair(AU, US): 190 * time.Millisecond}
	estimated := Matrix{MakePair(AU, DE): 290 * time.Millisecond, MakePair(AU, US): 50 * time.Millisecond}
	got := FailoverOrder(AU, all, measured, estimated)
	// JP 120 (measured), US 190 (measured wins over estimate), DE 290 (estimated).
	if want := []topology.RegionID{JP, US, DE}; !slices.Equal(got, want) {
		t.Fatalf("FailoverOrder = %v, want %v", got, want)
	}
	if got := FailoverOrder(AU, all, nil, nil); !slices.Equal(got, []topology.RegionID{JP, US, DE}) {
		t.Fatalf("FailoverOrder without RTTs = %v, want configured order", got)
	}
}

func TestStateText(t *testing.T) {
	for _, s := range []State{StateActive, StateDraining, StateFailed} {
		b, _ := s.MarshalText()
		var back State
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Fatalf("round trip %v: %v %v", s, back, err)
		}
	}
	if _, err := ParseState("dead"); err == nil {
		t.Fatal("ParseState accepted dead")
	}
}

func TestTopologyHelpers(t *testing.T) {
	est, err := topology.Rank("208") // France
	if err != nil {
		t.Fatal(err)
	}
	d := Decide(Input{Visited: topology.PLMN{MCC: "208", MNC: "01"}, Static: FromEstimates(est), Estimated: EstimatedMatrix()})
	if d.Region != DE {
		t.Fatalf("France → %s (%q), want DE", d.Region, d.Reasons)
	}
	m := EstimatedMatrix()
	if len(m) != 6 {
		t.Fatalf("estimated matrix has %d pairs", len(m))
	}
	// Without measurements, the failover order of a dead DE follows
	// geography: US is nearer to Frankfurt than Tokyo or Sydney.
	if got := FailoverOrder(DE, all, nil, m); got[0] != US || got[2] != AU {
		t.Fatalf("FailoverOrder(DE) by estimate = %v", got)
	}
}
