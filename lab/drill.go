package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/consensus"
	"github.com/rendezvous-core/rendezvous/federation/membership"
	"github.com/rendezvous-core/rendezvous/federation/steering"
	"github.com/rendezvous-core/rendezvous/roamsim"
	"github.com/rendezvous-core/rendezvous/topology"
)

// StepKind is what a drill step does.
type StepKind string

// Drill steps.
const (
	// StepKill stops a region's node as a crash would (no graceful leave).
	StepKill StepKind = "kill"
	// StepRestore restarts a killed region's node and asks the raft leader
	// to restore the region.
	StepRestore StepKind = "restore"
	// StepPartition cuts a region's node off from every other node
	// (gossip and raft) for a while.
	StepPartition StepKind = "partition"
	// StepPause makes a node hang for a while: in the in-process lab its
	// federation links go silent (the multi-process lab sends SIGSTOP).
	StepPause StepKind = "pause"
	// StepRegistryDown makes the registry unreachable for a while (needs a
	// PostgreSQL registry: the lab routes it through a proxy it can cut).
	StepRegistryDown StepKind = "registry-down"
)

// Step is one step of a drill: "kill DE at 10s", "partition US at 20s for
// 30s", "registry-down at 15s for 20s".
type Step struct {
	Kind   StepKind          `json:"kind"`
	Region topology.RegionID `json:"region,omitempty"`
	At     time.Duration     `json:"at"`
	For    time.Duration     `json:"for,omitempty"`
}

func (s Step) String() string {
	var b strings.Builder
	b.WriteString(string(s.Kind))
	if s.Region != "" {
		b.WriteString(" " + string(s.Region))
	}
	fmt.Fprintf(&b, " at %v", s.At)
	if s.For > 0 {
		fmt.Fprintf(&b, " for %v", s.For)
	}
	return b.String()
}

// ParseDrill parses a drill: steps separated by ";" or newlines, each
// "KIND [REGION] at DURATION [for DURATION]".
func ParseDrill(spec string) ([]Step, error) {
	var steps []Step
	for i, raw := range strings.FieldsFunc(spec, func(r rune) bool { return r == ';' || r == '\n' }) {
		f := strings.Fields(raw)
		if len(f) == 0 {
			continue
		}
		bad := func(msg string, args ...any) error {
			return fmt.Errorf("drill step %d %q: %s", i+1, strings.TrimSpace(raw), fmt.Sprintf(msg, args...))
		}
		s := Step{Kind: StepKind(strings.ToLower(f[0]))}
		f = f[1:]
		switch s.Kind {
		case StepKill, StepRestore, StepPartition, StepPause:
			if len(f) == 0 {
				return nil, bad("needs a region (JP, US, DE or AU)")
			}
			s.Region = topology.RegionID(strings.ToUpper(f[0]))
			if _, ok := topology.LookupRegion(s.Region); !ok {
				return nil, bad("unknown region %q", f[0])
			}
			f = f[1:]
		case StepRegistryDown:
		default:
			return nil, bad("unknown step %q (want kill, restore, partition, pause or registry-down)", s.Kind)
		}
		for len(f) > 0 {
			if len(f) < 2 {
				return nil, bad("%q needs a duration", f[0])
			}
			d, err := time.ParseDuration(f[1])
			if err != nil || d < 0 {
				return nil, bad("bad duration %q", f[1])
			}
			switch strings.ToLower(f[0]) {
			case "at":
				s.At = d
			case "for":
				s.For = d
			default:
				return nil, bad("unexpected %q (want: at D [for D])", f[0])
			}
			f = f[2:]
		}
		needFor := s.Kind == StepPartition || s.Kind == StepPause || s.Kind == StepRegistryDown
		if needFor && s.For == 0 {
			return nil, bad("%s needs \"for DURATION\"", s.Kind)
		}
		if !needFor && s.For != 0 {
			return nil, bad("%s takes no \"for\"", s.Kind)
		}
		steps = append(steps, s)
	}
	if len(steps) == 0 {
		return nil, errors.New("drill: no steps")
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].At < steps[j].At })
	return steps, nil
}

// Millis is a distribution summary in milliseconds.
type Millis struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	Max float64 `json:"max_ms"`
}

func summarize(ds []time.Duration) Millis {
	if len(ds) == 0 {
		return Millis{}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	idx := func(q float64) int {
		i := int(q*float64(len(ds)) + 0.5)
		if i >= len(ds) {
			i = len(ds) - 1
		}
		return i
	}
	return Millis{N: len(ds), P50: ms(ds[idx(0.5)]), P95: ms(ds[idx(0.95)]), Max: ms(ds[len(ds)-1])}
}

// StepReport is what one drill step measured.
type StepReport struct {
	Step string    `json:"step"`
	At   time.Time `json:"at"`
	// DetectedMS: fault → a surviving node's gossip saw the region's node
	// dead, suspect or left (-1: not observed).
	DetectedMS float64 `json:"detected_ms"`
	// DecidedMS: fault → the committed table on every surviving node
	// changed the region's state (-1: not observed).
	DecidedMS float64 `json:"decided_ms"`
	// Affected: devices served by the faulted region at the fault.
	Affected int `json:"affected_devices"`
	// Recovery: fault → first data packet answered through another region,
	// over the affected devices that recovered before the step ended.
	Recovery     Millis `json:"recovery"`
	NotRecovered int    `json:"not_recovered"`
	// RecoveredPerSec is the observed re-homing rate: recovered devices
	// over the span from the first to the last recovery (compare with the
	// configured rehome rate times the nodes holding the MMEs).
	RecoveredPerSec float64 `json:"recovered_per_sec,omitempty"`
	// AttachesFailed counts attach failures during the step.
	AttachesFailed int `json:"attaches_failed"`
	// SessionsLostElsewhere counts devices served by regions that were not
	// faulted that lost their session during the step. Must be 0.
	SessionsLostElsewhere int `json:"sessions_lost_elsewhere"`
	// MinorityDecided is true if a partitioned or paused node's own table
	// changed while it was cut off (a minority must decide nothing).
	MinorityDecided bool   `json:"minority_decided,omitempty"`
	Note            string `json:"note,omitempty"`
}

// DrillReport is the outcome of a drill.
type DrillReport struct {
	Spec  string       `json:"spec"`
	Steps []StepReport `json:"steps"`
	// NotNearestAfter counts devices that ended away from their nearest
	// healthy region (must be 0).
	NotNearestAfter int `json:"not_at_nearest_healthy_after"`
}

// regionNode returns the lab's core node of a region (running or not).
func (l *Lab) regionNode(r topology.RegionID) (string, netip.Addr, error) {
	for _, n := range l.fed.Deployment.Nodes {
		if n.Region == r && n.Role == topology.RoleCore {
			return n.Name, n.Gossip.Addr(), nil
		}
	}
	return "", netip.Addr{}, fmt.Errorf("lab: no node in region %s", r)
}

// RunDrill runs the steps against the running lab and its devices. Each
// step's measurements end when the next step starts (the last one's after
// settle).
func (l *Lab) RunDrill(ctx context.Context, steps []Step, rec *Recorder, settle time.Duration) (DrillReport, error) {
	rep := DrillReport{}
	var specs []string
	for _, s := range steps {
		specs = append(specs, s.String())
	}
	rep.Spec = strings.Join(specs, "; ")
	start := time.Now()
	var wg sync.WaitGroup
	results := make([]StepReport, len(steps))
	for i, s := range steps {
		select {
		case <-ctx.Done():
			wg.Wait()
			return rep, ctx.Err()
		case <-time.After(time.Until(start.Add(s.At))):
		}
		// Every step is measured until the drill ends: a kill's devices may
		// recover after the next step started.
		last := steps[len(steps)-1]
		end := start.Add(last.At + last.For + settle)
		if e := start.Add(s.At + s.For + settle); e.After(end) {
			end = e
		}
		// Losses and failed attaches count until the next step begins, so
		// that a later step's deliberate moves are not charged to this one.
		lossEnd := end
		if i+1 < len(steps) {
			if e := start.Add(steps[i+1].At); e.Before(lossEnd) {
				lossEnd = e
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = l.runStep(ctx, s, rec, end, lossEnd)
		}()
	}
	wg.Wait()
	rep.Steps = results
	// Where devices ended.
	healthy := map[topology.RegionID]bool{}
	for _, n := range l.Nodes() {
		if n.Self().Role != topology.RoleCore {
			continue
		}
		for r, row := range n.Consensus().Table().Regions {
			healthy[r] = row.State == steering.StateActive || row.State == 0
		}
		break
	}
	for _, d := range rec.Devices() {
		if !d.Attached {
			continue
		}
		if want := deviceNearest(d, func(r topology.RegionID) bool { return healthy[r] }); want != "" && want != d.Region {
			rep.NotNearestAfter++
		}
	}
	return rep, nil
}

// deviceNearest is the nearest healthy region of the country a device
// roams in (the lab's devices roam in roamsim.DefaultCountries).
func deviceNearest(d DeviceState, healthy func(topology.RegionID) bool) topology.RegionID {
	for _, c := range roamsim.DefaultCountries() {
		if strings.EqualFold(c.Alpha2, d.Country) {
			return nearestHealthy(c.PLMN.MCC, healthy)
		}
	}
	return ""
}

func (l *Lab) runStep(ctx context.Context, s Step, rec *Recorder, end, lossEnd time.Time) StepReport {
	sr := StepReport{Step: s.String(), DetectedMS: -1, DecidedMS: -1}
	// Who is where before the fault.
	affected := map[topology.IMSI]bool{}
	for imsi, d := range rec.Devices() {
		switch {
		case s.Kind == StepRestore:
			// Devices that belong back in the restored region.
			if d.Attached && d.Region != s.Region && deviceNearest(d, nil) == s.Region {
				affected[imsi] = true
			}
		case d.Attached && d.Region == s.Region:
			affected[imsi] = true
		}
	}
	sr.Affected = len(affected)
	var victim string
	var victimAddr netip.Addr
	if s.Region != "" {
		var err error
		if victim, victimAddr, err = l.regionNode(s.Region); err != nil {
			sr.Note = err.Error()
			return sr
		}
	}
	before := l.tableOf(victim)
	faultAt := time.Now()
	sr.At = faultAt
	var heal func()
	switch s.Kind {
	case StepKill:
		if err := l.Kill(victim); err != nil {
			sr.Note = err.Error()
			return sr
		}
	case StepRestore:
		if _, running := l.Node(victim); !running {
			if err := l.StartNode(ctx, victim, l.bcfg); err != nil {
				sr.Note = err.Error()
				return sr
			}
		}
		l.restoreRegion(ctx, s.Region)
	case StepPartition, StepPause:
		if l.faults == nil {
			sr.Note = "the lab runs without a fault network"
			return sr
		}
		l.faults.Partition([]netip.Addr{victimAddr})
		heal = l.faults.Heal
	case StepRegistryDown:
		if l.regProxy == nil {
			sr.Note = "registry-down needs a PostgreSQL registry (--registry postgres://…): the embedded SQLite cannot be cut"
			return sr
		}
		l.regProxy.SetDown(true)
		heal = func() { l.regProxy.SetDown(false) }
	}

	// Measure until the step ends.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	healAt := faultAt.Add(s.For)
	recovered := map[topology.IMSI]time.Duration{}
	for now := time.Now(); now.Before(end); now = time.Now() {
		if heal != nil && !now.Before(healAt) {
			heal()
			heal = nil
		}
		if s.Region != "" && sr.DetectedMS < 0 && l.someoneSeesDown(victim) {
			sr.DetectedMS = float64(time.Since(faultAt).Microseconds()) / 1000
		}
		if s.Region != "" && sr.DecidedMS < 0 && l.allDecided(victim, s.Region, before) {
			sr.DecidedMS = float64(time.Since(faultAt).Microseconds()) / 1000
		}
		if (s.Kind == StepPartition || s.Kind == StepPause) && heal != nil {
			if n, ok := l.Node(victim); ok {
				if n.Consensus().Table().Regions[s.Region].State != before.Regions[s.Region].State {
					sr.MinorityDecided = true
				}
			}
		}
		select {
		case <-ctx.Done():
			if heal != nil {
				heal()
			}
			return sr
		case <-tick.C:
		}
	}
	if heal != nil {
		heal()
	}
	for _, e := range rec.Since(faultAt) {
		switch e.Kind {
		case roamsim.EventFirstData:
			back := s.Kind == StepRestore && e.Region == s.Region
			away := s.Kind != StepRestore && e.Region != s.Region
			if affected[e.IMSI] && (back || away) {
				if _, ok := recovered[e.IMSI]; !ok {
					recovered[e.IMSI] = e.Time.Sub(faultAt)
				}
			}
		case roamsim.EventAttachFailed:
			if e.Time.Before(lossEnd) {
				sr.AttachesFailed++
			}
		case roamsim.EventCancelled, roamsim.EventBearerDelete, roamsim.EventDetached:
			if e.Time.Before(lossEnd) && s.Kind != StepRestore && !affected[e.IMSI] && e.Region != s.Region && e.Region != "" {
				sr.SessionsLostElsewhere++
			}
		}
	}
	var ds []time.Duration
	for _, d := range recovered {
		ds = append(ds, d)
	}
	sr.Recovery = summarize(ds)
	if len(ds) > 1 {
		if span := ds[len(ds)-1] - ds[0]; span > 0 {
			sr.RecoveredPerSec = float64(len(ds)-1) / span.Seconds()
		}
	}
	if s.Kind != StepRegistryDown {
		sr.NotRecovered = len(affected) - len(recovered)
	}
	return sr
}

// tableOf returns the table of a node other than the victim.
func (l *Lab) tableOf(victim string) consensus.Table {
	for _, n := range l.Nodes() {
		if n.Name() != victim {
			return n.Consensus().Table()
		}
	}
	return consensus.Table{}
}

// someoneSeesDown reports whether a surviving node's gossip sees the
// victim dead, suspect or left.
func (l *Lab) someoneSeesDown(victim string) bool {
	for _, n := range l.Nodes() {
		if n.Name() == victim {
			continue
		}
		if m, ok := n.Member(victim); !ok || m.State != membership.StateAlive {
			return true
		}
	}
	return false
}

// allDecided reports whether every surviving node's table changed the
// region's state.
func (l *Lab) allDecided(victim string, r topology.RegionID, before consensus.Table) bool {
	any := false
	for _, n := range l.Nodes() {
		if n.Name() == victim {
			continue
		}
		any = true
		if n.Consensus().Table().Regions[r].State == before.Regions[r].State {
			return false
		}
	}
	return any
}

// restoreRegion is the operator's way back to normal: restore the region
// in the committed table, then rebalance it so that the devices whose
// nearest region it is move back, at the re-homing rate (restore alone never
// forces devices back, DESIGN.md §2). In-process, the leader is at hand.
func (l *Lab) restoreRegion(ctx context.Context, r topology.RegionID) {
	deadline := time.Now().Add(30 * time.Second)
	restored := false
	for time.Now().Before(deadline) {
		for _, n := range l.Nodes() {
			if !n.Consensus().IsLeader() {
				continue
			}
			c := n.Consensus()
			if !restored {
				row := c.Table().Regions[r]
				if row.State == steering.StateActive {
					restored = true // the policy was quicker
				} else if _, err := c.Restore(ctx, r, "drill: restore"); err == nil {
					restored = true
				}
			}
			if restored {
				if _, err := c.Rebalance(ctx, r, "drill: restore"); err == nil {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}
