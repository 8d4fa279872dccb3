package consensus_test

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/membership"
	"github.com/rendezvous-core/rendezvous/federation/steering"
)

// TestLossNoFalseFailover: 10 % and then 30 % gossip packet loss (and an
// RTO penalty on that share of TCP dials) must never fail a region.
//
// Default: the fast preset, 20 s per loss level (bounded for CI). With
// RDV_SOAK=1: the production preset (tuned WAN gossip, tuned-2s raft,
// production policy), 3 min per level. RDV_LOSS_DURATION overrides the
// per-level duration (e.g. 90s).
func TestLossNoFalseFailover(t *testing.T) {
	d, p := 20*time.Second, fastPreset()
	if os.Getenv("RDV_SOAK") != "" {
		d, p = 3*time.Minute, productionPreset()
	}
	if v := os.Getenv("RDV_LOSS_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("RDV_LOSS_DURATION: %v", err)
		}
	}
	f := newFed(t, 80, p)
	f.settle()
	for _, loss := range []float64{0.10, 0.30} {
		f.net.SetLoss(loss)
		sent0, drop0 := f.net.Stats()
		falseDeaths := 0
		wasDead := map[string]bool{}
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			for _, n := range f.nodes {
				tab := n.cons.Table()
				for _, r := range regions {
					if row := tab.Regions[r]; row.State != steering.StateActive || row.Epoch != 0 {
						t.Fatalf("loss %.0f%%: false failover on %s: %s %+v", loss*100, n.name, r, row)
					}
				}
				for _, m := range n.mem.Members() {
					key := n.name + ">" + m.Name
					dead := m.State != membership.StateAlive
					if dead && !wasDead[key] {
						falseDeaths++
					}
					wasDead[key] = dead
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		sent, drop := f.net.Stats()
		t.Logf("loss %.0f%% for %s: %d/%d gossip packets dropped, %d false gossip deaths (observer>peer), 0 failovers",
			loss*100, d, drop-drop0, sent-sent0, falseDeaths)
	}
}

// TestMeasureDeathToDecision measures the time from a region node's crash
// to the committed decision (the leader applied RegionFailed) and to the
// last survivor applying it, over RDV_MEASURE runs (skipped when unset).
// RDV_MEASURE_PRESET=fast uses the test preset (default: production).
// RDV_MEASURE_KILL=leader kills the leader's region instead of another.
// RDV_MEASURE_WAN=1 emulates the notes' WAN RTTs (JP-US 120 ms … DE-AU
// 290 ms, witness at SG) in faultnet.
//
//	RDV_MEASURE=5 go test -run TestMeasureDeathToDecision -v -timeout 30m ./federation/consensus/
func TestMeasureDeathToDecision(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("RDV_MEASURE"))
	if runs <= 0 {
		t.Skip("set RDV_MEASURE=N to measure")
	}
	p, name := productionPreset(), "production"
	if os.Getenv("RDV_MEASURE_PRESET") == "fast" {
		p, name = fastPreset(), "fast"
	}
	if os.Getenv("RDV_MEASURE_WAN") != "" {
		p.wan, name = true, name+"+WAN RTTs"
	}
	killLeader := os.Getenv("RDV_MEASURE_KILL") == "leader"
	var commit, all []time.Duration
	for i := 0; i < runs; i++ {
		t.Run(fmt.Sprintf("run%d", i), func(t *testing.T) {
			f := newFed(t, 100+5*(i%30), p)
			l := f.ensureRegionLeader()
			time.Sleep(2 * time.Second) // RTT samples, steady state
			victim := l
			if !killLeader {
				for j, n := range f.nodes {
					if j != l && n.region != "" {
						victim = j
						break
					}
				}
			}
			region := f.nodes[victim].region
			start := time.Now()
			f.kill(victim)
			var tCommit, tAll time.Duration
			waitFor(t, "decision applied everywhere", 3*time.Minute, func() bool {
				applied := 0
				for _, n := range f.live() {
					if n.cons.Table().Regions[region].State == steering.StateFailed {
						applied++
					}
				}
				if applied > 0 && tCommit == 0 {
					// The first FSM to apply it proves it committed (an entry
					// is applied only once committed, Raft paper §5.3).
					tCommit = time.Since(start)
				}
				if applied == len(f.live()) {
					tAll = time.Since(start)
					return true
				}
				return false
			})
			t.Logf("run %d: %s (%s) died → committed %s, applied on all %d survivors %s",
				i, region, f.nodes[victim].name, tCommit.Round(time.Millisecond), len(f.live()), tAll.Round(time.Millisecond))
			commit = append(commit, tCommit)
			all = append(all, tAll)
		})
	}
	med := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2]
	}
	t.Logf("preset %s, kill leader's region=%v, %d runs: death→commit median %s max %s; death→all applied median %s max %s",
		name, killLeader, len(commit), med(commit).Round(time.Millisecond), slices.Max(commit).Round(time.Millisecond),
		med(all).Round(time.Millisecond), slices.Max(all).Round(time.Millisecond))
}
