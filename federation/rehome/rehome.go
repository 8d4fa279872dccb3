// Package rehome moves devices off a region when the committed routing
// table says so: when a region becomes failed or draining, every device
// whose serving row names it gets a CLR with Reattach-Required (TS 29.272
// §5.2.1.2, CLR-Flags) through this node's HSS — but only devices whose
// MME this node is connected to; the node that is connected does the
// others — and, for a drain, its sessions on this node's PGW are deleted
// PGW-initiated after the CLR. The device re-attaches and steering sends it
// to the next region. Everything is paced by one token bucket per node
// (Config.Rate) so that the surviving regions see no attach storm.
//
// Restore never forces devices back; an operator Rebalance of a region
// does, at the same rate, for the devices steering now sends there.
//
// It reacts only to tables applied by consensus (Observe), never to a
// node's own membership view. region/ imports it; it imports topology and
// federation packages.
package rehome

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/rendezvous-core/rendezvous/federation/consensus"
	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/federation/steering"
	"github.com/rendezvous-core/rendezvous/topology"
)

// ErrNotConnected is what HSS.CancelLocation returns (wrapped) when this
// node has no connection to the device's MME, unless Config.NotConnected
// says otherwise. The device is skipped: the connected node re-homes it.
var ErrNotConnected = errors.New("rehome: no connection to the MME")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("rehome: closed")

// Registry lists the serving rows of a region, in IMSI order, after a
// cursor (registry.Store implements it). Safe for concurrent use.
type Registry interface {
	ServedIn(ctx context.Context, region topology.RegionID, after topology.IMSI, limit int) ([]registry.Serving, error)
}

// HSS sends a CLR to the device's serving MME (region/hss: CancelLocation
// with Cancellation-Type SubscriptionWithdrawal). Safe for concurrent use.
type HSS interface {
	CancelLocation(ctx context.Context, imsi topology.IMSI, reattach bool) error
}

// HSSFunc adapts a function to HSS.
type HSSFunc func(ctx context.Context, imsi topology.IMSI, reattach bool) error

// CancelLocation calls f.
func (f HSSFunc) CancelLocation(ctx context.Context, imsi topology.IMSI, reattach bool) error {
	return f(ctx, imsi, reattach)
}

// PGW deletes, PGW-initiated, every session of a device on this node
// (region/pgw DeleteIMSI). Safe for concurrent use.
type PGW interface {
	DeleteIMSI(ctx context.Context, imsi topology.IMSI) error
}

// PGWFunc adapts a function to PGW.
type PGWFunc func(ctx context.Context, imsi topology.IMSI) error

// DeleteIMSI calls f.
func (f PGWFunc) DeleteIMSI(ctx context.Context, imsi topology.IMSI) error { return f(ctx, imsi) }

// Clock is the time source: real in production, fake in tests.
type Clock interface {
	Now() time.Time
	// After is time.After.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config configures a Rehomer.
type Config struct {
	// Region of this node ("" for a witness, which re-homes nothing).
	Region topology.RegionID
	// Regions of the federation (a rebalance scans them all).
	Regions  []topology.RegionID
	Registry Registry
	HSS      HSS
	// PGW of this node; optional (nil: no PGW-initiated deletes).
	PGW PGW
	// Rate is the number of devices re-homed per second by this node;
	// default 50. Burst is the token bucket depth; default 1 (no burst).
	Rate  float64
	Burst int
	// PageSize of the registry scan; default 256.
	PageSize int
	// NotConnected reports a CLR error meaning "not connected to that MME"
	// (default errors.Is(err, ErrNotConnected)); e.g. hss.ErrNoPeer.
	NotConnected func(error) bool
	// Gone reports a CLR error meaning the device is no longer registered
	// there (e.g. hss.ErrNotRegistered): counted done. Optional.
	Gone func(error) bool
	// Mine, when set, says whether this node can reach the device's MME
	// (its HSS holds the MME's Diameter connection). Devices that are not
	// mine are left to the node that can, without spending a token of the
	// bucket on them: with N nodes scanning the same rows, pacing every row
	// would slow each node's own devices N-fold. Optional.
	Mine func(registry.Serving) bool
	// Steer returns the region steering sends the device to now (the HSS's
	// steering.Decide with the subscriber's policy and the committed
	// table). Needed for Rebalance; without it a rebalance moves nothing.
	Steer func(registry.Serving) (topology.RegionID, bool)
	// Clock; default real time.
	Clock Clock
	// OpTimeout bounds one CLR or delete; default 10 s.
	OpTimeout time.Duration
	// Logger; default slog.Default(). Registerer; nil → private registry.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

func (c *Config) validate() error {
	if c.Registry == nil || c.HSS == nil {
		return errors.New("rehome: config: Registry and HSS are required")
	}
	if len(c.Regions) == 0 {
		return errors.New("rehome: config: no Regions")
	}
	if c.Rate == 0 {
		c.Rate = 50
	}
	if c.Rate < 0 {
		return fmt.Errorf("rehome: config: Rate %v < 0", c.Rate)
	}
	if c.Burst <= 0 {
		c.Burst = 1
	}
	if c.PageSize <= 0 {
		c.PageSize = 256
	}
	if c.NotConnected == nil {
		c.NotConnected = func(err error) bool { return errors.Is(err, ErrNotConnected) }
	}
	if c.Gone == nil {
		c.Gone = func(error) bool { return false }
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	return nil
}

// Kind is why devices are moved.
type Kind string

// Kinds of jobs.
const (
	KindFailover  Kind = "failover"  // region failed: CLR only (its PGW is gone)
	KindDrain     Kind = "drain"     // region draining: CLR, then PGW delete if the PGW is ours
	KindRebalance Kind = "rebalance" // move back to a region the devices now steer to
)

// Progress is one job's progress on this node.
type Progress struct {
	Region topology.RegionID
	Kind   Kind
	// Epoch is the region's table epoch that started the job.
	Epoch   uint64
	Started time.Time
	// Total is the number of devices found to move (for a failover/drain:
	// the region's serving rows when the job started).
	Total int
	// Done: CLR sent and answered (or the device had already moved).
	Done int
	// Skipped: not this node's to move (no connection to the MME).
	Skipped int
	// Failed: CLR failed (timeout, error answer).
	Failed int
	// Remaining = Total − Done − Skipped − Failed (never negative).
	Remaining int
	// PGWDeleted counts PGW-initiated deletes after CLRs (drain).
	PGWDeleted int
	// Rate is the achieved rate: devices handled per second since Started.
	Rate      float64
	Finished  bool
	Cancelled bool
	LastError string
}

// Status is the re-homing status of this node.
type Status struct {
	Rate  float64 // configured devices per second
	Burst int
	// Jobs, running first, newest first; finished jobs are kept until a
	// newer job for the same region replaces them.
	Jobs []Progress
}

type job struct {
	key    jobKey
	cancel context.CancelFunc
	done   chan struct{}
	// mu guards p.
	mu sync.Mutex
	p  Progress
}

type jobKey struct {
	region topology.RegionID
	kind   Kind
}

// Rehomer runs re-homing jobs for this node. Feed it every applied table
// with Observe (or run Follow on consensus.Node.Subscribe's channel).
// Methods are safe for concurrent use.
type Rehomer struct {
	cfg     Config
	log     *slog.Logger
	limiter *rate.Limiter
	m       *metrics
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once

	mu   sync.Mutex // guards following fields
	jobs map[jobKey]*job
	last *consensus.Table
}

// New returns a Rehomer; it starts goroutines only for jobs.
func New(cfg Config) (*Rehomer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Rehomer{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "rehome"),
		limiter: rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst),
		m:       m,
		ctx:     ctx,
		stop:    stop,
		jobs:    map[jobKey]*job{},
	}, nil
}

// Follow observes every table from ch (consensus.Node.Subscribe) until ch
// is closed or ctx is done. The caller owns the goroutine that runs it.
func (r *Rehomer) Follow(ctx context.Context, ch <-chan consensus.Table) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.ctx.Done():
			return ErrClosed
		case t, ok := <-ch:
			if !ok {
				return nil
			}
			r.Observe(t)
		}
	}
}

// Observe compares an applied table with the previous one and starts or
// cancels jobs:
//   - a region that became failed or draining (or changed epoch while so):
//     move its devices away (cancelling any older job for it);
//   - a region that became active (restore): stop moving its devices away,
//     and never move them back;
//   - a region whose Rebalances increased: move back the devices steering
//     now sends to it.
//
// The first table observed starts jobs for regions already failed or
// draining, so that re-homing resumes after a restart.
func (r *Rehomer) Observe(t consensus.Table) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return
	}
	prev := r.last
	tc := t.Clone()
	r.last = &tc
	for _, region := range t.Sorted() {
		row := t.Regions[region]
		var old consensus.Region
		var had bool
		if prev != nil {
			old, had = prev.Regions[region]
		}
		away := row.State == steering.StateFailed || row.State == steering.StateDraining
		switch {
		case away && (!had || old.Epoch != row.Epoch || old.State != row.State):
			kind := KindFailover
			if row.State == steering.StateDraining {
				kind = KindDrain
			}
			r.cancelLocked(region, KindFailover)
			r.cancelLocked(region, KindDrain)
			r.startLocked(region, kind, row.Epoch)
		case row.State == steering.StateActive && had && old.State != steering.StateActive:
			// Restore never forces devices back (DESIGN.md §2).
			r.cancelLocked(region, KindFailover)
			r.cancelLocked(region, KindDrain)
		}
		if row.State == steering.StateActive && had && row.Rebalances > old.Rebalances {
			r.cancelLocked(region, KindRebalance)
			r.startLocked(region, KindRebalance, row.Epoch)
		}
	}
}

func (r *Rehomer) cancelLocked(region topology.RegionID, kind Kind) {
	if j, ok := r.jobs[jobKey{region, kind}]; ok {
		j.cancel()
	}
}

func (r *Rehomer) startLocked(region topology.RegionID, kind Kind, epoch uint64) {
	ctx, cancel := context.WithCancel(r.ctx)
	j := &job{key: jobKey{region, kind}, cancel: cancel, done: make(chan struct{}),
		p: Progress{Region: region, Kind: kind, Epoch: epoch, Started: r.cfg.Clock.Now()}}
	r.jobs[j.key] = j
	r.log.Info("re-homing started", "region", region, "kind", kind, "epoch", epoch, "rate", r.cfg.Rate)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(j.done)
		defer cancel()
		// A registry outage must not end the job: the region stays failed
		// and its devices still need moving once the scan works again.
		// Devices already moved are no longer in the region's rows, so a
		// retry picks up where the failure left off.
		var err error
		for backoff := time.Second; ; backoff = min(2*backoff, 10*time.Second) {
			if err = r.run(ctx, j); err == nil || ctx.Err() != nil {
				break
			}
			j.mu.Lock()
			j.p.LastError = err.Error()
			j.mu.Unlock()
			r.log.Warn("re-homing: retrying after an error", "region", region, "kind", kind, "in", backoff, "err", err)
			select {
			case <-ctx.Done():
			case <-r.cfg.Clock.After(backoff):
				continue
			}
			err = ctx.Err()
			break
		}
		j.mu.Lock()
		j.p.Finished = true
		if err != nil {
			j.p.Cancelled = true
			if !errors.Is(err, context.Canceled) {
				j.p.LastError = err.Error()
			}
		}
		p := j.p
		j.mu.Unlock()
		r.log.Info("re-homing ended", "region", region, "kind", kind, "total", p.Total, "done", p.Done,
			"skipped", p.Skipped, "failed", p.Failed, "cancelled", p.Cancelled, "err", err)
	}()
}

// scan pages through the devices the job moves, calling fn for each (nil:
// just count them). It streams: a region may serve millions of devices.
// Rows that move away while it runs (re-attached elsewhere) do not disturb
// the IMSI cursor.
func (r *Rehomer) scan(ctx context.Context, j *job, fn func(registry.Serving) error) (int, error) {
	scan := []topology.RegionID{j.key.region}
	if j.key.kind == KindRebalance {
		if r.cfg.Steer == nil {
			return 0, nil
		}
		scan = slices.DeleteFunc(slices.Clone(r.cfg.Regions), func(x topology.RegionID) bool { return x == j.key.region })
	}
	n := 0
	for _, region := range scan {
		after := topology.IMSI("")
		for {
			page, err := r.cfg.Registry.ServedIn(ctx, region, after, r.cfg.PageSize)
			if err != nil {
				return n, fmt.Errorf("rehome: scan %s after %q: %w", region, after, err)
			}
			for _, s := range page {
				if j.key.kind == KindRebalance {
					if to, ok := r.cfg.Steer(s); !ok || to != j.key.region {
						continue
					}
				} else if s.Region != j.key.region {
					continue
				}
				if r.cfg.Mine != nil && !r.cfg.Mine(s) {
					continue // another node holds this MME's connection
				}
				n++
				if fn != nil {
					if err := fn(s); err != nil {
						return n, err
					}
				}
			}
			if len(page) < r.cfg.PageSize {
				break
			}
			after = page[len(page)-1].IMSI
		}
	}
	return n, nil
}

func (r *Rehomer) run(ctx context.Context, j *job) error {
	total, err := r.scan(ctx, j, nil)
	if err != nil {
		return err
	}
	j.mu.Lock()
	j.p.Total = j.p.Done + j.p.Skipped + j.p.Failed + total // after a retry: what was handled plus what is left
	j.p.Remaining = total
	j.mu.Unlock()
	_, err = r.scan(ctx, j, func(s registry.Serving) error {
		if err := r.wait(ctx); err != nil {
			return err
		}
		r.one(ctx, j, s)
		return nil
	})
	return err
}

// wait takes one token of the node's bucket, sleeping on the injected
// clock until it is available.
func (r *Rehomer) wait(ctx context.Context) error {
	if r.cfg.Rate == 0 {
		return nil
	}
	now := r.cfg.Clock.Now()
	res := r.limiter.ReserveN(now, 1)
	if !res.OK() {
		return fmt.Errorf("rehome: rate %v/s burst %d cannot pace", r.cfg.Rate, r.cfg.Burst)
	}
	d := res.DelayFrom(now)
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		res.CancelAt(r.cfg.Clock.Now())
		return ctx.Err()
	case <-r.cfg.Clock.After(d):
		return nil
	}
}

// one re-homes one device.
func (r *Rehomer) one(ctx context.Context, j *job, s registry.Serving) {
	octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
	defer cancel()
	err := r.cfg.HSS.CancelLocation(octx, s.IMSI, true)
	result := "done"
	switch {
	case err == nil || r.cfg.Gone(err):
	case r.cfg.NotConnected(err):
		result = "skipped"
	default:
		result = "failed"
	}
	deleted := false
	if result == "done" && err == nil && j.key.kind != KindFailover && r.cfg.PGW != nil && s.Region == r.cfg.Region {
		// The region is alive (drain/rebalance) and its PGW is ours: clean
		// up the sessions PGW-initiated; the MME's detach usually did.
		if derr := r.cfg.PGW.DeleteIMSI(octx, s.IMSI); derr != nil {
			r.log.Debug("PGW-initiated delete", "imsi", s.IMSI, "err", derr)
		} else {
			deleted = true
		}
	}
	r.m.devices.WithLabelValues(string(j.key.kind), result).Inc()
	j.mu.Lock()
	defer j.mu.Unlock()
	switch result {
	case "done":
		j.p.Done++
	case "skipped":
		j.p.Skipped++
	default:
		j.p.Failed++
		j.p.LastError = err.Error()
	}
	if deleted {
		j.p.PGWDeleted++
	}
	j.p.Remaining = max(0, j.p.Total-j.p.Done-j.p.Skipped-j.p.Failed)
}

// Status returns every job's progress.
func (r *Rehomer) Status() Status {
	now := r.cfg.Clock.Now()
	r.mu.Lock()
	jobs := make([]*job, 0, len(r.jobs))
	for _, j := range r.jobs {
		jobs = append(jobs, j)
	}
	r.mu.Unlock()
	st := Status{Rate: r.cfg.Rate, Burst: r.cfg.Burst}
	for _, j := range jobs {
		j.mu.Lock()
		p := j.p
		j.mu.Unlock()
		if el := now.Sub(p.Started).Seconds(); el > 0 {
			p.Rate = float64(p.Done+p.Skipped+p.Failed) / el
		}
		st.Jobs = append(st.Jobs, p)
	}
	slices.SortFunc(st.Jobs, func(a, b Progress) int {
		if a.Finished != b.Finished {
			if !a.Finished {
				return -1
			}
			return 1
		}
		if c := b.Started.Compare(a.Started); c != 0 {
			return c
		}
		if a.Region != b.Region {
			if a.Region < b.Region {
				return -1
			}
			return 1
		}
		if a.Kind < b.Kind {
			return -1
		} else if a.Kind > b.Kind {
			return 1
		}
		return 0
	})
	return st
}

// Wait blocks until no job is running or ctx is done (tests, shutdown).
func (r *Rehomer) Wait(ctx context.Context) error {
	for {
		r.mu.Lock()
		var running *job
		for _, j := range r.jobs {
			select {
			case <-j.done:
			default:
				running = j
			}
		}
		r.mu.Unlock()
		if running == nil {
			return nil
		}
		select {
		case <-running.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close cancels every job and waits for them. Idempotent.
func (r *Rehomer) Close() error {
	r.once.Do(func() {
		r.mu.Lock()
		r.stop()
		r.mu.Unlock()
		r.wg.Wait()
	})
	return nil
}

type metrics struct {
	devices *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{devices: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "rdv", Subsystem: "rehome", Name: "devices_total",
		Help: "Devices handled by re-homing on this node, by job kind and result (done, skipped, failed).",
	}, []string{"kind", "result"})}
	if err := reg.Register(m.devices); err != nil {
		return nil, fmt.Errorf("rehome: register metrics: %w", err)
	}
	return m, nil
}
