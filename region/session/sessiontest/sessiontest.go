// Package sessiontest has in-memory stand-ins for the session table's
// dependencies, for tests of region/session, region/pgw and region/ggsn:
// a recording breakout.Tunnels and a map-backed subscriber lookup. They are
// not the things under test there. Only tests import it.
package sessiontest

import (
	"context"
	"fmt"
	"sync"

	"github.com/rendezvous-core/rendezvous/breakout"
	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/topology"
)

// Tunnels records the tunnels installed, like a breakout without a data
// plane. Fail, when set, makes Install fail with it.
type Tunnels struct {
	mu       sync.Mutex
	tunnels  map[breakout.TEID]breakout.Tunnel
	counters map[breakout.TEID]breakout.Counters
	installs int
	removes  int
	Fail     error
}

// NewTunnels returns an empty recording breakout.
func NewTunnels() *Tunnels {
	return &Tunnels{tunnels: map[breakout.TEID]breakout.Tunnel{}, counters: map[breakout.TEID]breakout.Counters{}}
}

// SetCounters sets the counters a tunnel reports (Counters, Remove).
func (r *Tunnels) SetCounters(local breakout.TEID, c breakout.Counters) {
	r.mu.Lock()
	r.counters[local] = c
	r.mu.Unlock()
}

// Install implements breakout.Tunnels.
func (r *Tunnels) Install(t breakout.Tunnel) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Fail != nil {
		return r.Fail
	}
	r.tunnels[t.LocalTEID] = t
	r.installs++
	return nil
}

// Remove implements breakout.Tunnels.
func (r *Tunnels) Remove(local breakout.TEID) (breakout.Counters, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.tunnels[local]; !ok {
		return breakout.Counters{}, breakout.ErrUnknownTEID
	}
	delete(r.tunnels, local)
	r.removes++
	if c, ok := r.counters[local]; ok {
		delete(r.counters, local)
		return c, nil
	}
	return breakout.Counters{PacketsUp: 1, BytesUp: 100, PacketsDown: 2, BytesDown: 200}, nil
}

// Counters implements breakout.Tunnels.
func (r *Tunnels) Counters(local breakout.TEID) (breakout.Counters, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.tunnels[local]
	return r.counters[local], ok
}

// Get returns an installed tunnel.
func (r *Tunnels) Get(local breakout.TEID) (breakout.Tunnel, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.tunnels[local]
	return t, ok
}

// Stats returns the number of installed tunnels and the Install and
// Remove calls so far.
func (r *Tunnels) Stats() (installed, installs, removes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.tunnels), r.installs, r.removes
}

// Discard is a breakout.Tunnels that keeps nothing (for memory
// measurements that exclude the breakout).
type Discard struct{}

// Install implements breakout.Tunnels.
func (Discard) Install(breakout.Tunnel) error { return nil }

// Remove implements breakout.Tunnels.
func (Discard) Remove(breakout.TEID) (breakout.Counters, error) { return breakout.Counters{}, nil }

// Counters implements breakout.Tunnels.
func (Discard) Counters(breakout.TEID) (breakout.Counters, bool) { return breakout.Counters{}, false }

// Subscribers is a map-backed subscriber lookup.
type Subscribers struct {
	mu   sync.RWMutex
	subs map[topology.IMSI]registry.Subscriber
	err  error
}

// SetErr makes every lookup fail with err (e.g. registry.ErrUnavailable);
// nil restores normal lookups.
func (s *Subscribers) SetErr(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

// NewSubscribers returns an empty lookup.
func NewSubscribers() *Subscribers {
	return &Subscribers{subs: map[topology.IMSI]registry.Subscriber{}}
}

// Add provisions a subscriber.
func (s *Subscribers) Add(sub registry.Subscriber) {
	s.mu.Lock()
	s.subs[sub.IMSI] = sub
	s.mu.Unlock()
}

// AddRange provisions n active subscribers first, first+step, … with one
// APN each.
func (s *Subscribers) AddRange(first uint64, n int, step uint64, apn string) {
	for i := 0; i < n; i++ {
		s.Add(registry.Subscriber{
			IMSI:   topology.IMSI(fmt.Sprintf("%015d", first+uint64(i)*step)),
			Status: registry.StatusActive,
			APNs: []registry.APN{{Name: apn, PDNType: registry.PDNIPv4, QCI: 9, ARPPriority: 8,
				AMBRUplink: 1_000_000, AMBRDownlink: 2_000_000}},
		})
	}
}

// Subscriber implements the pgw/ggsn SubscriberLookup.
func (s *Subscribers) Subscriber(_ context.Context, imsi topology.IMSI) (registry.Subscriber, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.err != nil {
		return registry.Subscriber{}, s.err
	}
	sub, ok := s.subs[imsi]
	if !ok {
		return registry.Subscriber{}, fmt.Errorf("%w: %s", registry.ErrNotFound, imsi)
	}
	return sub, nil
}

// Anchors records enqueued session anchors.
type Anchors struct {
	mu      sync.Mutex
	Anchors []registry.SessionAnchor
}

// Enqueue implements session.AnchorSink.
func (a *Anchors) Enqueue(x registry.SessionAnchor) bool {
	a.mu.Lock()
	a.Anchors = append(a.Anchors, x)
	a.mu.Unlock()
	return true
}

// Len returns the number of anchors enqueued.
func (a *Anchors) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.Anchors)
}

// Usage records usage records.
type Usage struct {
	mu      sync.Mutex
	Records []registry.Usage
}

// RecordUsage implements session.UsageRecorder.
func (u *Usage) RecordUsage(_ context.Context, r registry.Usage) error {
	u.mu.Lock()
	u.Records = append(u.Records, r)
	u.mu.Unlock()
	return nil
}

// Len returns the number of usage records.
func (u *Usage) Len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.Records)
}
