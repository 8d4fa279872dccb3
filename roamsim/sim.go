package roamsim

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/rendezvous-core/rendezvous/topology"
)

// Event is a device life-cycle event, delivered to Config.OnEvent.
type Event struct {
	Time    time.Time
	Kind    EventKind
	IMSI    topology.IMSI
	Country string // alpha-2 of the visited country
	Region  topology.RegionID
	PGW     netip.Addr
	Latency time.Duration // attach latency (EventAttached) or RTT (EventFirstData)
	Cause   string        // failures and cancellations
}

// EventKind names an Event.
type EventKind string

// Event kinds.
const (
	EventAttached     EventKind = "attached"
	EventAttachFailed EventKind = "attach-failed"
	EventFirstData    EventKind = "first-data" // first probe answered since the attach
	EventCancelled    EventKind = "cancelled"  // CLR received
	EventBearerDelete EventKind = "bearer-deleted"
	EventDetached     EventKind = "detached"
)

type phase uint8

const (
	phIdle phase = iota
	phAttaching
	phAttached
	phDetached
	phFailed
)

func (p phase) String() string {
	return [...]string{"idle", "attaching", "attached", "detached", "failed"}[p]
}

// Failure is one failed procedure of a device.
type Failure struct {
	At    time.Time `json:"at"`
	Stage string    `json:"stage"` // AIR, USIM, ULR, CSR, CreatePDP, DSR, data
	Cause string    `json:"cause"`
	// Code is the Diameter (experimental) result code or GTP cause, 0 if
	// none (timeouts, USIM rejections, malformed answers).
	Code uint32 `json:"code,omitempty"`
}

const maxFailures = 8

type devState struct {
	idx     int
	dev     Device
	bcd     [3]byte
	country string
	mme     *mme

	op sync.Mutex // serializes procedures of this device (held by a worker)

	mu            sync.Mutex // guards the fields below; never held across I/O
	usim          *USIM
	ph            phase
	gen           uint8
	sess          session
	hasSess       bool
	region        topology.RegionID
	pgw           netip.Addr
	pgwHost       string
	idrPGW        netip.Addr
	attachStart   time.Time
	attachLatency time.Duration
	attaches      int
	reattaches    int
	cancels       int
	failures      []Failure
	failCount     int
	// probes
	nextProbe   time.Time
	probeSeq    uint16
	probeSent   time.Time
	outstanding bool
	probesDone  int
	sent, recv  uint64
	rttN        int
	rttSum      time.Duration
	rttMin      time.Duration
	rttMax      time.Duration
	rttLast     time.Duration
	wantFirst   bool
	finishing   bool
	terminal    bool
	// a CLR that arrived while attaching applies once the attach ends
	cancelPending  bool
	cancelReattach bool
}

type jobKind uint8

const (
	jobAttach jobKind = iota + 1
	jobReattach
	jobFinish      // one-shot: detach after the probes
	jobDeleteStale // delete an abandoned session (no op lock)
)

type job struct {
	kind jobKind
	d    *devState
	sess session // jobDeleteStale
}

// Sim is the emulator. Create it with New, run it once with Run.
type Sim struct {
	cfg    Config
	log    *slog.Logger
	devs   []*devState
	byIMSI map[string]*devState
	mmes   []*mme
	lim    *rate.Limiter

	sockMu sync.Mutex // guards gtpc, dp and started against Snapshot
	gtpc   *gtpcEndpoint
	dp     *dataPlane

	sched     scheduler
	jobs      chan job
	remaining atomic.Int64
	allDone   chan struct{}
	doneOnce  sync.Once
	ran       atomic.Bool
	started   time.Time

	c counters
}

type counters struct {
	attachOK, attachFail, reattach, clr, idr, dbr, detached atomic.Uint64
	peerRestarts, echoFail, mbrOK, mbrFail                  atomic.Uint64
	resync, probesSent, probesOK, probesLost                atomic.Uint64
}

// New validates cfg and prepares the devices and MMEs; it opens no socket.
func New(cfg Config) (*Sim, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Sim{cfg: cfg, log: cfg.Logger, byIMSI: make(map[string]*devState, len(cfg.Devices)),
		jobs: make(chan job), allDone: make(chan struct{})}
	if cfg.AttachRate > 0 {
		s.lim = rate.NewLimiter(rate.Limit(cfg.AttachRate), cfg.AttachBurst)
	} else {
		s.lim = rate.NewLimiter(rate.Inf, 1)
	}
	mmeByName := map[string]*mme{}
	for i, d := range cfg.Devices {
		bcd, _ := plmnBCD(d.Visited)
		ds := &devState{idx: i, dev: d, bcd: bcd, usim: NewUSIM(SIMKeys{Ki: d.Ki, OPc: d.OPc}), gen: 1}
		ds.country = string(d.Visited.MCC)
		if c, ok := CountryByMCC(cfg.Countries, d.Visited.MCC); ok {
			ds.country = c.Alpha2
		}
		if d.RAT != RAT3G {
			var name, host string
			if cfg.MMEPool > 0 {
				name = fmt.Sprintf("pool%d", i%cfg.MMEPool)
				host = fmt.Sprintf("mme%d.pool.%s", i%cfg.MMEPool, cfg.OriginRealm)
			} else {
				name = strings.ToLower(ds.country)
				host = fmt.Sprintf("mme.%s.%s", name, cfg.OriginRealm)
			}
			m := mmeByName[name]
			if m == nil {
				m = newMME(name, host, cfg.OriginRealm, cfg.DestinationRealm, cfg.HSS, len(s.mmes), cfg.DiameterLocal,
					cfg.DiameterTimeout, cfg.WatchdogInterval, s.log, s)
				mmeByName[name] = m
				s.mmes = append(s.mmes, m)
			}
			ds.mme = m
		}
		s.devs = append(s.devs, ds)
		s.byIMSI[string(d.IMSI)] = ds
	}
	s.sched.init()
	return s, nil
}

// teid of device idx in generation gen: gen<<24 | idx+1 (never 0).
func teidOf(idx int, gen uint8) uint32 { return uint32(gen)<<24 | uint32(idx+1) }

func (s *Sim) devByTEID(teid uint32) (*devState, uint8) {
	idx := int(teid&0xffffff) - 1
	if idx < 0 || idx >= len(s.devs) {
		return nil, 0
	}
	return s.devs[idx], uint8(teid >> 24)
}

// Run opens the sockets and connections, runs the devices as Config.Mode
// says, detaches them, closes everything and returns the report. It may be
// called once. The error is non-nil only if the emulator itself could not
// run (sockets); device failures are in the Report.
func (s *Sim) Run(ctx context.Context) (Report, error) {
	if !s.ran.CompareAndSwap(false, true) {
		return Report{}, errors.New("roamsim: Run called twice")
	}
	gtpc, err := newGTPCEndpoint(s.cfg.GTPC, s.cfg.T3, s.cfg.N3, s.cfg.RestartCounter, s.log, s)
	if err != nil {
		return Report{}, err
	}
	dp, err := newDataPlane(s.cfg.GTPU, s.cfg.UDPPort, s)
	if err != nil {
		gtpc.close()
		return Report{}, err
	}
	s.sockMu.Lock()
	s.gtpc, s.dp, s.started = gtpc, dp, time.Now()
	s.sockMu.Unlock()
	s.remaining.Store(int64(len(s.devs)))

	var io sync.WaitGroup // socket readers and MMEs
	io.Add(2)
	go func() { defer io.Done(); s.gtpc.serve() }()
	go func() { defer io.Done(); s.dp.serve() }()
	mmeCtx, stopMMEs := context.WithCancel(context.Background())
	for _, m := range s.mmes {
		io.Add(1)
		go func() { defer io.Done(); m.run(mmeCtx) }()
	}

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(3 + s.cfg.Concurrency)
	go func() { defer wg.Done(); s.sched.run(runCtx, s.jobs) }()
	go func() { defer wg.Done(); s.prober(runCtx) }()
	go func() { defer wg.Done(); s.pathManager(runCtx) }()
	for range s.cfg.Concurrency {
		go func() { defer wg.Done(); s.worker(runCtx) }()
	}
	now := time.Now()
	for _, d := range s.devs {
		s.sched.push(now, job{kind: jobAttach, d: d})
	}

	if s.cfg.Mode == OneShot {
		select {
		case <-s.allDone:
		case <-ctx.Done():
		}
	} else {
		<-ctx.Done()
	}
	stop()
	wg.Wait()

	// Final detach of whatever is still attached, bounded in time.
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.DetachTimeout)
	s.detachAll(dctx)
	cancel()

	stopMMEs()
	s.gtpc.close()
	s.dp.close()
	io.Wait()
	return s.report(time.Now()), nil
}

func (s *Sim) detachAll(ctx context.Context) {
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, d := range s.devs {
		d.mu.Lock()
		has := d.hasSess
		d.mu.Unlock()
		if !has {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.detach(ctx, d)
		}()
	}
	wg.Wait()
}

func (s *Sim) emit(e Event) {
	if s.cfg.OnEvent != nil {
		e.Time = time.Now()
		s.cfg.OnEvent(e)
	}
}

func (s *Sim) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.jobs:
			s.do(ctx, j)
		}
	}
}

func (s *Sim) do(ctx context.Context, j job) {
	d := j.d
	switch j.kind {
	case jobDeleteStale:
		if err := s.deleteSession(ctx, d, j.sess); err != nil && ctx.Err() == nil {
			s.log.Debug("roamsim: delete abandoned session", "imsi", d.dev.IMSI, "err", err)
		}
		return
	case jobFinish:
		d.op.Lock()
		s.detach(ctx, d)
		d.op.Unlock()
		s.markTerminal(d)
		return
	}
	if err := s.lim.Wait(ctx); err != nil {
		return
	}
	d.op.Lock()
	defer d.op.Unlock()
	d.mu.Lock()
	if d.hasSess || d.terminal {
		d.mu.Unlock()
		return // already attached (duplicate trigger)
	}
	d.ph = phAttaching
	d.attachStart = time.Now()
	if j.kind == jobReattach {
		d.reattaches++
		s.c.reattach.Add(1)
	}
	d.mu.Unlock()
	if err := s.attach(ctx, d); err != nil {
		if ctx.Err() != nil {
			return
		}
		s.c.attachFail.Add(1)
		d.mu.Lock()
		d.ph = phFailed
		d.cancelPending = false
		d.mu.Unlock()
		if s.cfg.Mode == Continuous {
			s.sched.push(time.Now().Add(s.cfg.RetryInterval), job{kind: jobAttach, d: d})
		} else {
			s.markTerminal(d)
		}
	}
}

func (s *Sim) markTerminal(d *devState) {
	d.mu.Lock()
	already := d.terminal
	d.terminal = true
	d.mu.Unlock()
	if !already && s.remaining.Add(-1) == 0 {
		s.doneOnce.Do(func() { close(s.allDone) })
	}
}

// fail records a failure of stage and returns err.
func (s *Sim) fail(d *devState, stage string, err error) error {
	f := Failure{At: time.Now(), Stage: stage, Cause: err.Error()}
	var de *DiameterError
	var ge *GTPCauseError
	switch {
	case errors.As(err, &de):
		f.Code = de.Code
	case errors.As(err, &ge):
		f.Code = uint32(ge.Cause)
	}
	d.mu.Lock()
	d.failCount++
	if len(d.failures) == maxFailures {
		copy(d.failures, d.failures[1:])
		d.failures = d.failures[:maxFailures-1]
	}
	d.failures = append(d.failures, f)
	d.mu.Unlock()
	s.emit(Event{Kind: EventAttachFailed, IMSI: d.dev.IMSI, Country: d.country, Cause: stage + ": " + f.Cause})
	return err
}

// attach runs the whole attach of one device; the caller holds d.op.
func (s *Sim) attach(ctx context.Context, d *devState) error {
	imsi := string(d.dev.IMSI)
	d.mu.Lock()
	d.gen++
	if d.gen == 0 {
		d.gen = 1
	}
	gen := d.gen
	start := d.attachStart
	d.mu.Unlock()
	localTEID := teidOf(d.idx, gen)

	var (
		sess    session
		pgw     netip.Addr
		pgwHost string
		apn     = d.dev.APN
		region  topology.RegionID
		err     error
	)
	if d.dev.RAT == RAT3G {
		if apn == "" {
			apn = "internet"
		}
		sess, err = s.gtpc.createPDP(ctx, s.cfg.GGSN, pdpParams{imsi: imsi, msisdn: d.dev.MSISDN, apn: apn,
			visited: d.dev.Visited, localC: localTEID, localU: localTEID,
			sgsnC: s.cfg.GTPC.Addr(), sgsnU: s.cfg.GTPU.Addr(), nsapi: 5})
		if err != nil {
			return s.fail(d, "CreatePDP", err)
		}
		pgw = s.cfg.GGSN.Addr()
	} else {
		if err := s.authenticate(ctx, d); err != nil {
			return err
		}
		ula, err := d.mme.ULR(ctx, imsi, d.bcd, d.dev.APN)
		if err != nil {
			return s.fail(d, "ULR", err)
		}
		pgw, pgwHost = ula.PGW, ula.PGWHost
		if apn == "" {
			apn = ula.APN
		}
		sess, err = s.gtpc.createSession(ctx, netip.AddrPortFrom(pgw, s.cfg.PGWPort), csrParams{imsi: imsi,
			msisdn: d.dev.MSISDN, apn: apn, visited: d.dev.Visited, localC: localTEID, localU: localTEID,
			sgwC: s.cfg.GTPC.Addr(), sgwU: s.cfg.GTPU.Addr()})
		if err != nil {
			return s.fail(d, "CSR", err)
		}
		if s.cfg.ModifyBearer {
			if err := s.gtpc.modifyBearer(ctx, sess, s.cfg.GTPU.Addr()); err != nil {
				s.c.mbrFail.Add(1)
				s.gtpc.deleteSession(ctx, sess)
				return s.fail(d, "MBR", err)
			}
			s.c.mbrOK.Add(1)
		}
	}
	region = s.cfg.regionOf(pgw, pgwHost)
	now := time.Now()
	lat := now.Sub(start)
	d.mu.Lock()
	d.sess, d.hasSess = sess, true
	d.ph = phAttached
	d.pgw, d.pgwHost, d.region = pgw, pgwHost, region
	d.attachLatency = lat
	d.attaches++
	d.outstanding = false
	d.probesDone = 0
	d.nextProbe = now
	d.wantFirst = true
	d.finishing = false
	pend, re := d.cancelPending, d.cancelReattach
	d.cancelPending = false
	d.mu.Unlock()
	s.c.attachOK.Add(1)
	s.emit(Event{Kind: EventAttached, IMSI: d.dev.IMSI, Country: d.country, Region: region, PGW: pgw, Latency: lat})
	if pend {
		s.applyCancel(d, re, "")
		return nil
	}
	if !s.cfg.Target.IsValid() && s.cfg.Mode == OneShot {
		s.sched.push(now, job{kind: jobFinish, d: d})
	}
	return nil
}

// authenticate runs AIR, verifies the vector as the USIM, and resyncs once
// on an SQN failure.
func (s *Sim) authenticate(ctx context.Context, d *devState) error {
	imsi := string(d.dev.IMSI)
	var resync []byte
	for attempt := 0; attempt < 2; attempt++ {
		vs, err := d.mme.AIR(ctx, imsi, d.bcd, resync)
		if err != nil {
			return s.fail(d, "AIR", err)
		}
		d.mu.Lock()
		_, verr := d.usim.Verify(vs[0], d.bcd)
		d.mu.Unlock()
		if verr == nil {
			return nil
		}
		var ve *VectorError
		if errors.As(verr, &ve) && errors.Is(verr, ErrSyncFailure) && attempt == 0 {
			s.c.resync.Add(1)
			resync = append(append([]byte{}, vs[0].RAND...), ve.AUTS...)
			continue
		}
		return s.fail(d, "USIM", verr)
	}
	return s.fail(d, "USIM", errors.New("roamsim: vector still not fresh after resynchronisation"))
}

func (s *Sim) deleteSession(ctx context.Context, d *devState, sess session) error {
	if d.dev.RAT == RAT3G {
		return s.gtpc.deletePDPContext(ctx, sess)
	}
	return s.gtpc.deleteSession(ctx, sess)
}

// detach deletes the device's session; the caller holds d.op (or the
// workers are stopped).
func (s *Sim) detach(ctx context.Context, d *devState) {
	d.mu.Lock()
	sess, has := d.sess, d.hasSess
	d.hasSess = false
	if has {
		d.ph = phDetached
	}
	d.mu.Unlock()
	if !has {
		return
	}
	if err := s.deleteSession(ctx, d, sess); err != nil {
		stage := "DSR"
		if d.dev.RAT == RAT3G {
			stage = "DeletePDP"
		}
		f := Failure{At: time.Now(), Stage: stage, Cause: err.Error()}
		var ge *GTPCauseError
		if errors.As(err, &ge) {
			f.Code = uint32(ge.Cause)
		}
		d.mu.Lock()
		d.failures = append(d.failures[:min(len(d.failures), maxFailures-1)], f)
		d.mu.Unlock()
	}
	s.c.detached.Add(1)
	s.emit(Event{Kind: EventDetached, IMSI: d.dev.IMSI, Country: d.country})
}

// ---- peer-initiated procedures (called on reader goroutines; never block)

func (s *Sim) cancelLocation(m *mme, imsi string, ct uint32, reattach bool) {
	s.c.clr.Add(1)
	d := s.byIMSI[imsi]
	if d == nil || d.mme != m {
		s.log.Debug("roamsim: CLR for a device this MME does not serve", "mme", m.originHost, "imsi", imsi)
		return
	}
	cause := fmt.Sprintf("CLR cancellation-type %d", ct)
	if reattach {
		cause += ", reattach required"
	}
	d.mu.Lock()
	d.cancels++
	if d.ph == phAttaching {
		// The attach in flight may be the registration being cancelled:
		// apply the CLR when it ends.
		d.cancelPending, d.cancelReattach = true, reattach
		d.mu.Unlock()
		s.emit(Event{Kind: EventCancelled, IMSI: d.dev.IMSI, Country: d.country, Cause: cause + " (during attach)"})
		return
	}
	d.mu.Unlock()
	s.applyCancel(d, reattach, cause)
}

// applyCancel detaches the device locally (the session is deleted in the
// background) and schedules the re-attach.
func (s *Sim) applyCancel(d *devState, reattach bool, cause string) {
	d.mu.Lock()
	sess, has := d.sess, d.hasSess
	d.hasSess = false
	d.outstanding = false
	if d.ph == phAttached {
		d.ph = phDetached
	}
	region := d.region
	d.mu.Unlock()
	if cause != "" {
		s.emit(Event{Kind: EventCancelled, IMSI: d.dev.IMSI, Country: d.country, Region: region, Cause: cause})
	}
	now := time.Now()
	if has {
		s.sched.push(now, job{kind: jobDeleteStale, d: d, sess: sess})
	}
	if reattach {
		s.sched.push(now.Add(s.cfg.ReattachDelay), job{kind: jobReattach, d: d})
	} else if s.cfg.Mode == OneShot {
		s.markTerminal(d)
	}
}

func (s *Sim) insertSubscriberData(m *mme, imsi string, pgw netip.Addr) {
	s.c.idr.Add(1)
	if d := s.byIMSI[imsi]; d != nil && pgw.IsValid() {
		d.mu.Lock()
		d.idrPGW = pgw // applies to the next PDN connection
		d.mu.Unlock()
	}
}

func (s *Sim) deleteBearer(teid uint32, cause uint8) {
	s.c.dbr.Add(1)
	d, gen := s.devByTEID(teid)
	if d == nil {
		return
	}
	d.mu.Lock()
	if !d.hasSess || d.gen != gen {
		d.mu.Unlock()
		return
	}
	d.hasSess = false
	d.outstanding = false
	d.ph = phDetached
	region := d.region
	d.mu.Unlock()
	s.emit(Event{Kind: EventBearerDelete, IMSI: d.dev.IMSI, Country: d.country, Region: region, Cause: fmt.Sprintf("cause %d", cause)})
	switch {
	case cause == 8: // reactivation requested
		s.sched.push(time.Now().Add(s.cfg.ReattachDelay), job{kind: jobReattach, d: d})
	case s.cfg.Mode == Continuous:
		s.sched.push(time.Now().Add(s.cfg.RetryInterval), job{kind: jobReattach, d: d})
	default:
		s.markTerminal(d)
	}
}

func (s *Sim) deletePDP(teid uint32, teardown bool) {
	s.deleteBearer(teid, 0)
}

// peerTEID maps our C-TEID to the peer's, for answers to its requests.
func (s *Sim) peerTEID(teid uint32) uint32 {
	d, gen := s.devByTEID(teid)
	if d == nil {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gen != gen || !d.hasSess {
		return 0
	}
	return d.sess.PeerC
}

// ---- data

func (s *Sim) probeReply(teid uint32, seq uint16) {
	d, gen := s.devByTEID(teid)
	if d == nil {
		return
	}
	now := time.Now()
	d.mu.Lock()
	if d.gen != gen || !d.hasSess || !d.outstanding || seq != d.probeSeq {
		d.mu.Unlock()
		return
	}
	rtt := now.Sub(d.probeSent)
	d.outstanding = false
	d.recv++
	d.probesDone++
	d.rttN++
	d.rttSum += rtt
	d.rttLast = rtt
	if d.rttMin == 0 || rtt < d.rttMin {
		d.rttMin = rtt
	}
	d.rttMax = max(d.rttMax, rtt)
	d.nextProbe = d.probeSent.Add(s.cfg.DataInterval)
	first := d.wantFirst
	d.wantFirst = false
	region, pgw := d.region, d.pgw
	d.mu.Unlock()
	s.c.probesOK.Add(1)
	if first {
		s.emit(Event{Kind: EventFirstData, IMSI: d.dev.IMSI, Country: d.country, Region: region, PGW: pgw, Latency: rtt})
	}
}

// errorIndication: the PGW/GGSN at gsn lost the tunnel it knows as teid. As
// an SGW does (TS 23.007 §20.2), the bearer is dropped and — in Continuous
// mode — the device re-attaches. O(devices), but Error Indications are rare.
func (s *Sim) errorIndication(teid uint32, gsn netip.Addr) {
	for _, d := range s.devs {
		d.mu.Lock()
		hit := d.hasSess && d.sess.PeerU == teid && d.sess.PeerUAdr == gsn
		if hit {
			d.hasSess, d.outstanding, d.ph = false, false, phDetached
		}
		region := d.region
		d.mu.Unlock()
		if !hit {
			continue
		}
		s.emit(Event{Kind: EventBearerDelete, IMSI: d.dev.IMSI, Country: d.country, Region: region,
			Cause: fmt.Sprintf("GTP-U Error Indication from %v", gsn)})
		if s.cfg.Mode == Continuous {
			s.sched.push(time.Now().Add(s.cfg.ReattachDelay), job{kind: jobReattach, d: d})
		} else {
			s.markTerminal(d)
		}
		return
	}
}

// prober is the one goroutine that sends probes and expires lost ones.
func (s *Sim) prober(ctx context.Context) {
	if !s.cfg.Target.IsValid() {
		return
	}
	tick := min(s.cfg.DataInterval/4, 50*time.Millisecond)
	tick = max(tick, 5*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		for _, d := range s.devs {
			d.mu.Lock()
			if !d.hasSess || d.finishing {
				d.mu.Unlock()
				continue
			}
			if d.outstanding && now.Sub(d.probeSent) > s.cfg.ProbeTimeout {
				d.outstanding = false
				d.probesDone++
				d.nextProbe = now
				s.c.probesLost.Add(1)
			}
			if s.cfg.Mode == OneShot && !d.outstanding && d.probesDone >= s.cfg.Probes {
				d.finishing = true
				d.mu.Unlock()
				s.sched.push(now, job{kind: jobFinish, d: d})
				continue
			}
			if d.outstanding || now.Before(d.nextProbe) {
				d.mu.Unlock()
				continue
			}
			d.probeSeq++
			seq, sess, gen := d.probeSeq, d.sess, d.gen
			d.probeSent, d.outstanding = now, true
			d.sent++
			d.mu.Unlock()
			s.c.probesSent.Add(1)
			peer := netip.AddrPortFrom(sess.PeerUAdr, PortGTPU)
			_ = s.dp.sendProbe(peer, sess.PeerU, sess.UE, s.cfg.Target, uint16(d.idx)^uint16(gen)<<12, seq)
		}
	}
}

// pathManager echoes every PGW with sessions (Continuous mode) and handles
// peer restarts: sessions created before the restart are gone at the peer.
func (s *Sim) pathManager(ctx context.Context) {
	if s.cfg.Mode != Continuous || s.cfg.EchoInterval < 0 {
		return
	}
	last := map[netip.AddrPort]uint8{}
	t := time.NewTicker(s.cfg.EchoInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		peers := map[netip.AddrPort]bool{}
		for _, d := range s.devs {
			d.mu.Lock()
			if d.hasSess && d.dev.RAT != RAT3G {
				peers[d.sess.Peer] = true
			}
			d.mu.Unlock()
		}
		type res struct {
			peer netip.AddrPort
			rec  uint8
			err  error
		}
		out := make(chan res, len(peers))
		var wg sync.WaitGroup
		for p := range peers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := s.gtpc.echo2(ctx, p)
				out <- res{p, r, err}
			}()
		}
		wg.Wait()
		close(out)
		for r := range out {
			if r.err != nil {
				if ctx.Err() == nil {
					s.c.echoFail.Add(1)
					s.log.Warn("roamsim: PGW echo failed", "pgw", r.peer, "err", r.err)
				}
				continue
			}
			prev, seen := last[r.peer]
			last[r.peer] = r.rec
			if seen && prev == r.rec {
				continue
			}
			s.peerRestarted(r.peer, r.rec)
		}
	}
}

// peerRestarted drops the sessions at peer whose Recovery differs from rec
// and re-attaches their devices.
func (s *Sim) peerRestarted(peer netip.AddrPort, rec uint8) {
	n := 0
	for _, d := range s.devs {
		d.mu.Lock()
		stale := d.hasSess && d.sess.Peer == peer && d.sess.Recovery >= 0 && uint8(d.sess.Recovery) != rec
		if stale {
			d.hasSess, d.outstanding, d.ph = false, false, phDetached
		}
		region := d.region
		d.mu.Unlock()
		if !stale {
			continue
		}
		n++
		s.emit(Event{Kind: EventBearerDelete, IMSI: d.dev.IMSI, Country: d.country, Region: region,
			Cause: fmt.Sprintf("PGW %v restarted (recovery %d)", peer, rec)})
		s.sched.push(time.Now().Add(s.cfg.ReattachDelay), job{kind: jobReattach, d: d})
	}
	if n > 0 {
		s.c.peerRestarts.Add(1)
		s.log.Warn("roamsim: PGW restarted", "pgw", peer, "recovery", rec, "sessions", n)
	}
}

// ---- scheduler: a delay queue feeding the workers (one goroutine, a heap)

type schedItem struct {
	at  time.Time
	seq uint64
	j   job
}

type schedHeap []schedItem

func (h schedHeap) Len() int { return len(h) }
func (h schedHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h schedHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *schedHeap) Push(x any)   { *h = append(*h, x.(schedItem)) }
func (h *schedHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

type scheduler struct {
	mu   sync.Mutex
	h    schedHeap
	seq  uint64
	wake chan struct{}
}

func (q *scheduler) init() { q.wake = make(chan struct{}, 1) }

func (q *scheduler) push(at time.Time, j job) {
	q.mu.Lock()
	q.seq++
	heap.Push(&q.h, schedItem{at: at, seq: q.seq, j: j})
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *scheduler) run(ctx context.Context, out chan<- job) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		q.mu.Lock()
		var (
			next  schedItem
			have  bool
			sleep = time.Hour
		)
		if len(q.h) > 0 {
			if d := time.Until(q.h[0].at); d <= 0 {
				next, have = heap.Pop(&q.h).(schedItem), true
			} else {
				sleep = d
			}
		}
		q.mu.Unlock()
		if have {
			select {
			case out <- next.j:
			case <-ctx.Done():
				return
			}
			continue
		}
		t.Reset(sleep)
		select {
		case <-t.C:
		case <-q.wake:
		case <-ctx.Done():
			return
		}
	}
}
