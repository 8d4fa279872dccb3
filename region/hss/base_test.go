package hss

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-diameter/v4/diam"
	"github.com/fiorix/go-diameter/v4/diam/avp"
	"github.com/fiorix/go-diameter/v4/diam/datatype"
	"github.com/fiorix/go-diameter/v4/diam/dict"

	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/topology"
)

// fakeClock drives the watchdog in tests: timers fire only on Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	clk    *fakeClock
	c      chan time.Time
	when   time.Time
	active bool
	fired  bool // fired and not yet re-armed or stopped
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) NewTimer(d time.Duration) Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{clk: f, c: make(chan time.Time, 1), when: f.now.Add(d), active: true}
	f.timers = append(f.timers, t)
	return t
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	for _, t := range f.timers {
		if t.active && !t.when.After(f.now) {
			t.active, t.fired = false, true
			select {
			case t.c <- f.now:
			default:
			}
		}
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	was := t.active
	t.active, t.fired = false, false
	return was
}
func (t *fakeTimer) Reset(d time.Duration) bool {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	was := t.active
	t.when, t.active, t.fired = t.clk.now.Add(d), true, false
	return was
}

// settled reports whether every timer that fired has been re-armed or
// stopped (the watchdog goroutines have acted on the tick).
func (f *fakeClock) settled() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.timers {
		if t.fired {
			return false
		}
	}
	return true
}

// advanceUntil advances the fake clock by step until done delivers. After
// each step it waits until the watchdogs acted and settle() holds (e.g.
// the DWAs of answering peers arrived), so virtual time never outruns the
// network.
func advanceUntil[T any](t *testing.T, clk *fakeClock, step time.Duration, done <-chan T, settle func() bool) T {
	t.Helper()
	deadline := time.Now().Add(hang)
	for time.Now().Before(deadline) {
		clk.Advance(step)
		for !(clk.settled() && (settle == nil || settle())) {
			if time.Now().After(deadline) {
				t.Fatal("watchdog never settled")
			}
			time.Sleep(time.Millisecond)
		}
		select {
		case v := <-done:
			return v
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("event never happened")
	var zero T
	return zero
}

// acked reports whether host's connection has no DWR outstanding.
func acked(s *Server, host string) func() bool {
	return func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for p := range s.peers {
			if h, _, ok := p.identity(); ok && h == host && p.dwr.Load() != 0 {
				return false
			}
		}
		return true
	}
}

// TestWatchdog: after Tw of silence the HSS sends DWR (RFC 3539 §3.4.1);
// a peer that answers stays; one that does not is disconnected.
func TestWatchdog(t *testing.T) {
	st := openStore(t)
	clk := newFakeClock()
	s := startHSS(t, st, func(c *Config) { c.Clock = clk; c.WatchdogInterval = 30 * time.Second })
	alive := dialMME(t, s.Addrs()[0], "alive.visited.example")
	dead := dialMME(t, s.Addrs()[0], "dead.visited.example")
	dead.answerDWR.Store(false)

	dwrs := make(chan *diam.Message, 16)
	go func() {
		for m := range alive.reqs {
			if m.Header.CommandCode == cmdDWR {
				dwrs <- m
			}
		}
	}()
	settle := acked(s, "alive.visited.example")
	dwr := advanceUntil(t, clk, 30*time.Second, dwrs, settle)
	if h, _ := text(find(dwr.AVP, avp.OriginHost)); h != "hss.jp.rendezvous.example" {
		t.Fatalf("DWR Origin-Host %q", h)
	}
	advanceUntil(t, clk, 30*time.Second, dead.closed, settle)
	// The answering peer got more DWRs and is still open.
	advanceUntil(t, clk, 30*time.Second, dwrs, settle)
	select {
	case <-alive.closed:
		t.Fatal("answering peer was disconnected")
	default:
	}
	if got := s.ConnectedPeers(); len(got) != 1 || got[0] != "alive.visited.example" {
		t.Fatalf("ConnectedPeers = %v", got)
	}
}

// TestPeerDWRAndDPR: the peer's DWR is answered with 2001 and
// Origin-State-Id; its DPR gets DPA 2001 and the HSS closes.
func TestPeerDWRAndDPR(t *testing.T) {
	st := openStore(t)
	s := startHSS(t, st, nil)
	mme := dialMME(t, s.Addrs()[0], "mme1.visited.example")
	dwr := diam.NewRequest(diam.DeviceWatchdog, 0, dict.Default)
	dwr.NewAVP(avp.OriginHost, fM, 0, datatype.DiameterIdentity(mme.host))
	dwr.NewAVP(avp.OriginRealm, fM, 0, datatype.DiameterIdentity(mme.realm))
	a := mme.roundTrip(dwr)
	expectResult(t, a, codeSuccess, false)
	if _, ok := u32(find(a.AVP, avp.OriginStateID)); !ok {
		t.Fatal("DWA without Origin-State-Id")
	}
	dpr := diam.NewRequest(diam.DisconnectPeer, 0, dict.Default)
	dpr.NewAVP(avp.OriginHost, fM, 0, datatype.DiameterIdentity(mme.host))
	dpr.NewAVP(avp.OriginRealm, fM, 0, datatype.DiameterIdentity(mme.realm))
	dpr.NewAVP(avp.DisconnectCause, fM, 0, datatype.Enumerated(0))
	expectResult(t, mme.roundTrip(dpr), codeSuccess, false)
	mme.waitClosed()
}

// TestCloseSendsDPR: Close disconnects peers with DPR, is idempotent, and
// the node then refuses connections.
func TestCloseSendsDPR(t *testing.T) {
	st := openStore(t)
	s := startHSS(t, st, nil)
	mme := dialMME(t, s.Addrs()[0], "mme1.visited.example")
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	dpr := mme.waitRequest(cmdDPR)
	if v, _ := u32(find(dpr.AVP, avp.DisconnectCause)); v != 0 {
		t.Fatalf("Disconnect-Cause %d", v)
	}
	mme.waitClosed()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.CancelLocation(t.Context(), "001010000000001", SubscriptionWithdrawal, true); !errors.Is(err, ErrClosed) {
		t.Fatalf("CancelLocation after Close: %v", err)
	}
}

// TestCEAAdvertisesS6aOnly: the CEA names S6a (10415/16777251) and nothing
// else (notes/diameter.md §2: go-diameter's sm would list every app).
func TestCEAAdvertisesS6aOnly(t *testing.T) {
	st := openStore(t)
	s := startHSS(t, st, nil)
	mme := dialMMEConn(t, s.Addrs()[0], "mme1.visited.example")
	cea := mme.roundTrip(mme.cer(true))
	expectResult(t, cea, codeSuccess, false)
	var apps []uint32
	for _, a := range cea.AVP {
		switch a.Code {
		case avp.AuthApplicationID, avp.AcctApplicationID:
			v, _ := u32(a)
			apps = append(apps, v)
		case avp.VendorSpecificApplicationID:
			for _, c := range children(a, 0) {
				if c.Code == avp.AuthApplicationID || c.Code == avp.AcctApplicationID {
					v, _ := u32(c)
					apps = append(apps, v)
				}
			}
		}
	}
	if len(apps) != 1 || apps[0] != appS6a {
		t.Fatalf("CEA advertises %v", apps)
	}
}

// gatedSubscribers blocks every Subscriber lookup until the gate opens
// (failure injection: a slow registry).
type gatedSubscribers struct {
	Subscribers
	gate    chan struct{}
	entered chan struct{}
}

func (g *gatedSubscribers) Subscriber(ctx context.Context, imsi topology.IMSI) (registry.Subscriber, error) {
	g.entered <- struct{}{}
	select {
	case <-g.gate:
	case <-ctx.Done():
		return registry.Subscriber{}, ctx.Err()
	}
	return g.Subscribers.Subscriber(ctx, imsi)
}

// TestBoundedConcurrencyWatchdogNotBlocked: with MaxInFlight requests stuck
// in a slow registry, a further request gets 3004 at once and the peer's
// DWR is still answered; the stuck requests complete when the registry
// recovers.
func TestBoundedConcurrencyWatchdogNotBlocked(t *testing.T) {
	st := openStore(t)
	sub, _ := provision(t, st, nil)
	g := &gatedSubscribers{Subscribers: st, gate: make(chan struct{}), entered: make(chan struct{}, 8)}
	s := startHSS(t, g, func(c *Config) { c.MaxInFlight = 2 })
	mme := dialMME(t, s.Addrs()[0], "mme1.visited.example")
	visited := plmnOf("44010")
	stuck := []chan *diam.Message{
		mme.send(mme.air(sub.IMSI, visited, 1, nil)),
		mme.send(mme.air(sub.IMSI, visited, 1, nil)),
	}
	<-g.entered
	<-g.entered
	a := mme.roundTrip(mme.air(sub.IMSI, visited, 1, nil))
	expectResult(t, a, codeTooBusy, false)
	dwr := diam.NewRequest(diam.DeviceWatchdog, 0, dict.Default)
	dwr.NewAVP(avp.OriginHost, fM, 0, datatype.DiameterIdentity(mme.host))
	dwr.NewAVP(avp.OriginRealm, fM, 0, datatype.DiameterIdentity(mme.realm))
	expectResult(t, mme.roundTrip(dwr), codeSuccess, false)
	close(g.gate)
	for _, ch := range stuck {
		select {
		case a := <-ch:
			expectResult(t, a, codeSuccess, false)
		case <-time.After(hang):
			t.Fatal("stuck request never answered")
		}
	}
}
