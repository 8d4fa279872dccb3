package lab

import (
	"sync"
	"time"

	"github.com/rendezvous-core/rendezvous/roamsim"
	"github.com/rendezvous-core/rendezvous/topology"
)

// maxEvents bounds the recorder's log: a long lab run keeps the newest.
const maxEvents = 200_000

// Recorder follows the visited network's device events (roamsim OnEvent):
// where each device is served now, and the event log drills measure from.
type Recorder struct {
	mu      sync.Mutex // guards following fields
	devices map[topology.IMSI]DeviceState
	events  []roamsim.Event
	dropped int
}

// DeviceState is a device's current attachment as the visited network sees it.
type DeviceState struct {
	Region   topology.RegionID
	Attached bool
	Since    time.Time
	// Country is the ISO 3166-1 alpha-2 code of the visited country.
	Country string
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{devices: map[topology.IMSI]DeviceState{}}
}

// OnEvent records one event; pass it as DevicesConfig.OnEvent.
func (r *Recorder) OnEvent(e roamsim.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) >= maxEvents {
		// Drop the oldest half at once rather than shifting every time.
		r.dropped += len(r.events) / 2
		r.events = append(r.events[:0], r.events[len(r.events)/2:]...)
	}
	r.events = append(r.events, e)
	d := r.devices[e.IMSI]
	if e.Country != "" {
		d.Country = e.Country
	}
	switch e.Kind {
	case roamsim.EventAttached:
		d.Region, d.Attached, d.Since = e.Region, true, e.Time
	case roamsim.EventCancelled, roamsim.EventBearerDelete, roamsim.EventDetached, roamsim.EventAttachFailed:
		d.Attached, d.Since = false, e.Time
	}
	r.devices[e.IMSI] = d
}

// Devices returns a copy of every device's state.
func (r *Recorder) Devices() map[topology.IMSI]DeviceState {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[topology.IMSI]DeviceState, len(r.devices))
	for k, v := range r.devices {
		out[k] = v
	}
	return out
}

// Since returns a copy of the events at or after t.
func (r *Recorder) Since(t time.Time) []roamsim.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []roamsim.Event
	for _, e := range r.events {
		if !e.Time.Before(t) {
			out = append(out, e)
		}
	}
	return out
}
