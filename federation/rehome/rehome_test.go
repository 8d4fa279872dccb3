package rehome

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/consensus"
	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/federation/steering"
	"github.com/rendezvous-core/rendezvous/topology"
)

var regions = []topology.RegionID{topology.JP, topology.US, topology.DE, topology.AU}

// fakeClock is the injected clock: time moves only on Advance.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
}

func (c *fakeClock) blocked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// fakeRegistry holds serving rows; a device that got a CLR re-attaches
// elsewhere (its row moves), as real devices do, while the scan runs.
type fakeRegistry struct {
	mu   sync.Mutex
	rows map[topology.IMSI]registry.Serving
	// down makes the next scans fail as an unreachable database would.
	down int
}

func (f *fakeRegistry) ServedIn(ctx context.Context, region topology.RegionID, after topology.IMSI, limit int) ([]registry.Serving, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down > 0 {
		f.down--
		return nil, registry.ErrUnavailable
	}
	var out []registry.Serving
	for _, s := range f.rows {
		if s.Region == region && s.IMSI > after {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IMSI < out[j].IMSI })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (f *fakeRegistry) move(imsi topology.IMSI, to topology.RegionID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.rows[imsi]
	s.Region = to
	f.rows[imsi] = s
}

type clr struct {
	imsi topology.IMSI
	at   time.Time
}

// fakeHSS is connected to some MMEs only.
type fakeHSS struct {
	reg       *fakeRegistry
	clock     *fakeClock
	connected map[string]bool
	fail      map[topology.IMSI]bool
	moveTo    topology.RegionID
	mu        sync.Mutex
	sent      []clr
	attempts  []time.Time
}

func (h *fakeHSS) numAttempts() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.attempts)
}

func (h *fakeHSS) CancelLocation(ctx context.Context, imsi topology.IMSI, reattach bool) error {
	if !reattach {
		return fmt.Errorf("CLR without Reattach-Required")
	}
	h.reg.mu.Lock()
	s := h.reg.rows[imsi]
	h.reg.mu.Unlock()
	h.mu.Lock()
	h.attempts = append(h.attempts, h.clock.Now())
	h.mu.Unlock()
	if !h.connected[s.MMEHost] {
		return fmt.Errorf("hss: CLR to %s: %w", s.MMEHost, ErrNotConnected)
	}
	if h.fail[imsi] {
		return fmt.Errorf("hss: CLR: timeout")
	}
	h.mu.Lock()
	h.sent = append(h.sent, clr{imsi, h.clock.Now()})
	h.mu.Unlock()
	if h.moveTo != "" {
		h.reg.move(imsi, h.moveTo) // the device re-attached elsewhere
	}
	return nil
}

type fakePGW struct {
	mu      sync.Mutex
	deleted []topology.IMSI
}

func (p *fakePGW) DeleteIMSI(ctx context.Context, imsi topology.IMSI) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deleted = append(p.deleted, imsi)
	return nil
}

type env struct {
	t     *testing.T
	clock *fakeClock
	reg   *fakeRegistry
	hss   *fakeHSS
	pgw   *fakePGW
	r     *Rehomer
}

// newEnv: n devices per listed region; IMSI i is on mme1 (connected)
// unless i%5 == 4 (mme2, connected to another node).
func newEnv(t *testing.T, self topology.RegionID, rate float64, perRegion map[topology.RegionID]int) *env {
	e := &env{t: t, clock: &fakeClock{now: time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)}, reg: &fakeRegistry{rows: map[topology.IMSI]registry.Serving{}}, pgw: &fakePGW{}}
	e.hss = &fakeHSS{reg: e.reg, clock: e.clock, connected: map[string]bool{"mme1": true}, fail: map[topology.IMSI]bool{}}
	k := 0
	for _, r := range regions {
		for i := 0; i < perRegion[r]; i++ {
			imsi := topology.IMSI(fmt.Sprintf("00101%010d", k))
			mme := "mme1"
			if i%5 == 4 {
				mme = "mme2"
			}
			e.reg.rows[imsi] = registry.Serving{IMSI: imsi, MMEHost: mme, Region: r}
			k++
		}
	}
	var err error
	e.r, err = New(Config{Region: self, Regions: regions, Registry: e.reg, HSS: e.hss, PGW: e.pgw, Rate: rate, Burst: 1,
		PageSize: 4, Clock: e.clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Steer: func(s registry.Serving) (topology.RegionID, bool) {
			// devices with an even last digit now steer to AU
			return map[bool]topology.RegionID{true: topology.AU, false: s.Region}[(s.IMSI[len(s.IMSI)-1]-'0')%2 == 0], true
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.r.Close() })
	return e
}

func table(states map[topology.RegionID]steering.State, epochs map[topology.RegionID]uint64, rebal map[topology.RegionID]uint64) consensus.Table {
	t := consensus.NewTable(regions)
	for _, r := range regions {
		row := t.Regions[r]
		if s, ok := states[r]; ok {
			row.State = s
		}
		row.Epoch, row.Rebalances = epochs[r], rebal[r]
		t.Regions[r] = row
	}
	return t
}

// run advances the fake clock in steps until every job finished, waiting
// (real time, generous deadline) for the workers to block on the clock
// between steps; it returns the fake time spent.
func (e *env) run(step time.Duration) time.Duration {
	e.t.Helper()
	start := e.clock.Now()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if e.idle() {
			return e.clock.Now().Sub(start)
		}
		// Wait for a worker to block on the clock (or finish).
		for e.clock.blocked() == 0 && !e.idle() {
			if time.Now().After(deadline) {
				e.t.Fatalf("workers neither blocked nor finished; status %+v", e.r.Status())
			}
			time.Sleep(time.Millisecond)
		}
		e.clock.Advance(step)
	}
}

func (e *env) idle() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	return e.r.Wait(ctx) == nil
}

func progressOf(t *testing.T, st Status, region topology.RegionID, kind Kind) Progress {
	t.Helper()
	for _, p := range st.Jobs {
		if p.Region == region && p.Kind == kind {
			return p
		}
	}
	t.Fatalf("no %s job for %s in %+v", kind, region, st)
	return Progress{}
}

// maxInWindow is the most attempts in any window of length w.
func maxInWindow(ts []time.Time, w time.Duration) int {
	best := 0
	for i := range ts {
		n := 0
		for j := i; j < len(ts) && ts[j].Sub(ts[i]) < w; j++ {
			n++
		}
		best = max(best, n)
	}
	return best
}

func TestFailoverRehomesConnectedDevicesAtRate(t *testing.T) {
	e := newEnv(t, topology.JP, 5, map[topology.RegionID]int{topology.AU: 25, topology.JP: 10})
	e.hss.moveTo = topology.JP
	e.hss.fail["001010000000012"] = true // AU device 2 (JP holds IMSIs 0–9)
	e.r.Observe(consensus.NewTable(regions))
	e.r.Observe(table(map[topology.RegionID]steering.State{topology.AU: steering.StateFailed}, map[topology.RegionID]uint64{topology.AU: 1}, nil))
	spent := e.run(50 * time.Millisecond)
	p := progressOf(t, e.r.Status(), topology.AU, KindFailover)
	if p.Total != 25 || p.Done != 19 || p.Skipped != 5 || p.Failed != 1 || p.Remaining != 0 || !p.Finished || p.Cancelled || p.Epoch != 1 {
		t.Fatalf("progress %+v", p)
	}
	if p.PGWDeleted != 0 || len(e.pgw.deleted) != 0 {
		t.Fatal("PGW deletes for a failed region (its PGW is gone)")
	}
	// The bucket: 5/s with burst 1 → 25 attempts take ≥ 4.8 s, and no
	// 1-second window holds more than rate+burst attempts.
	if spent < 4800*time.Millisecond {
		t.Fatalf("25 devices at 5/s took only %s of clock time", spent)
	}
	if n := maxInWindow(e.hss.attempts, time.Second); n > 6 {
		t.Fatalf("%d attempts in one second at rate 5/s", n)
	}
	// JP's devices were not touched.
	for _, c := range e.hss.sent {
		if c.imsi < "001010000000010" {
			t.Fatalf("CLR for a JP device %s", c.imsi)
		}
	}
	// The same table again starts nothing.
	e.r.Observe(table(map[topology.RegionID]steering.State{topology.AU: steering.StateFailed}, map[topology.RegionID]uint64{topology.AU: 1}, nil))
	if !e.idle() {
		t.Fatal("re-observing the same table started a job")
	}
}

func TestDrainDeletesOwnPGWSessionsAfterCLR(t *testing.T) {
	e := newEnv(t, topology.DE, 100, map[topology.RegionID]int{topology.DE: 10})
	e.r.Observe(consensus.NewTable(regions))
	e.r.Observe(table(map[topology.RegionID]steering.State{topology.DE: steering.StateDraining}, map[topology.RegionID]uint64{topology.DE: 1}, nil))
	e.run(10 * time.Millisecond)
	p := progressOf(t, e.r.Status(), topology.DE, KindDrain)
	if p.Done != 8 || p.Skipped != 2 || p.PGWDeleted != 8 || len(e.pgw.deleted) != 8 {
		t.Fatalf("drain progress %+v, deleted %v", p, e.pgw.deleted)
	}
	// Failing the draining region replaces the drain job by a failover job.
	e.r.Observe(table(map[topology.RegionID]steering.State{topology.DE: steering.StateFailed}, map[topology.RegionID]uint64{topology.DE: 2}, nil))
	e.run(10 * time.Millisecond)
	if p := progressOf(t, e.r.Status(), topology.DE, KindFailover); p.Epoch != 2 || !p.Finished {
		t.Fatalf("failover after drain: %+v", p)
	}
}

func TestRestoreStopsAndNeverForcesBack(t *testing.T) {
	e := newEnv(t, topology.JP, 1, map[topology.RegionID]int{topology.AU: 20})
	e.r.Observe(table(map[topology.RegionID]steering.State{topology.AU: steering.StateFailed}, map[topology.RegionID]uint64{topology.AU: 1}, nil))
	// Let three devices go, then restore AU.
	for e.hss.numAttempts() < 3 {
		for e.clock.blocked() == 0 {
			time.Sleep(time.Millisecond)
		}
		e.clock.Advance(time.Second)
	}
	e.r.Observe(table(nil, map[topology.RegionID]uint64{topology.AU: 2}, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.r.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	p := progressOf(t, e.r.Status(), topology.AU, KindFailover)
	if !p.Cancelled || p.Done+p.Skipped >= 20 {
		t.Fatalf("restore did not stop the job: %+v", p)
	}
	n := e.hss.numAttempts()
	e.clock.Advance(time.Minute)
	if e.hss.numAttempts() != n || len(e.r.Status().Jobs) != 1 {
		t.Fatalf("devices moved after restore: %d → %d, jobs %+v", n, e.hss.numAttempts(), e.r.Status().Jobs)
	}
}

func TestRebalanceMovesBackSteeredDevicesOnly(t *testing.T) {
	e := newEnv(t, topology.JP, 10, map[topology.RegionID]int{topology.JP: 10, topology.US: 10})
	e.hss.connected["mme2"] = true
	e.r.Observe(consensus.NewTable(regions))
	e.r.Observe(table(nil, nil, map[topology.RegionID]uint64{topology.AU: 1}))
	spent := e.run(10 * time.Millisecond)
	p := progressOf(t, e.r.Status(), topology.AU, KindRebalance)
	if p.Total != 10 || p.Done != 10 {
		t.Fatalf("rebalance %+v", p)
	}
	var got []topology.IMSI
	for _, c := range e.hss.sent {
		got = append(got, c.imsi)
		if (c.imsi[len(c.imsi)-1]-'0')%2 != 0 {
			t.Fatalf("CLR for %s, which does not steer to AU", c.imsi)
		}
	}
	if !slices.IsSorted(got) || spent < 900*time.Millisecond {
		t.Fatalf("rebalance order %v or pace %s", got, spent)
	}
	// JP's own devices were re-homed PGW-initiated too (JP is alive and ours).
	if p.PGWDeleted != 5 {
		t.Fatalf("PGW deletes %d, want 5 (JP devices)", p.PGWDeleted)
	}
}

func TestFirstTableResumesRehoming(t *testing.T) {
	e := newEnv(t, topology.US, 100, map[topology.RegionID]int{topology.AU: 5})
	e.r.Observe(table(map[topology.RegionID]steering.State{topology.AU: steering.StateFailed}, map[topology.RegionID]uint64{topology.AU: 3}, nil))
	e.run(10 * time.Millisecond)
	if p := progressOf(t, e.r.Status(), topology.AU, KindFailover); p.Done != 4 || p.Skipped != 1 {
		t.Fatalf("resume: %+v", p)
	}
}

func TestFollowAndClose(t *testing.T) {
	e := newEnv(t, topology.US, 0.001, map[topology.RegionID]int{topology.AU: 5})
	ch := make(chan consensus.Table, 1)
	done := make(chan error, 1)
	go func() { done <- e.r.Follow(context.Background(), ch) }()
	ch <- table(map[topology.RegionID]steering.State{topology.AU: steering.StateFailed}, map[topology.RegionID]uint64{topology.AU: 1}, nil)
	deadline := time.Now().Add(30 * time.Second)
	for len(e.r.Status().Jobs) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Follow did not start a job")
		}
		time.Sleep(time.Millisecond)
	}
	if err := e.r.Close(); err != nil { // cancels the job blocked on the bucket
		t.Fatal(err)
	}
	if err := <-done; err != ErrClosed {
		t.Fatalf("Follow after Close: %v", err)
	}
	if err := e.r.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRegistryOutageDoesNotEndTheJob: the region fails while the registry
// cannot be scanned; the job retries with backoff and moves every device
// once the registry answers again.
func TestRegistryOutageDoesNotEndTheJob(t *testing.T) {
	e := newEnv(t, topology.JP, 50, map[topology.RegionID]int{topology.AU: 10})
	e.hss.moveTo = topology.JP
	e.reg.mu.Lock()
	e.reg.down = 3
	e.reg.mu.Unlock()
	e.r.Observe(consensus.NewTable(regions))
	e.r.Observe(table(map[topology.RegionID]steering.State{topology.AU: steering.StateFailed}, map[topology.RegionID]uint64{topology.AU: 1}, nil))
	e.run(500 * time.Millisecond)
	p := progressOf(t, e.r.Status(), topology.AU, KindFailover)
	if !p.Finished || p.Cancelled || p.Done != 8 || p.Skipped != 2 || p.Remaining != 0 {
		t.Fatalf("after the outage: progress %+v", p)
	}
	if p.LastError == "" {
		t.Fatalf("the outage left no trace in the progress: %+v", p)
	}
}
