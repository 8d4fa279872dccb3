package netns

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"time"

	"github.com/rendezvous-core/rendezvous/roamsim"
	"github.com/rendezvous-core/rendezvous/topology"
)

// DevicesConfig configures the visited network.
type DevicesConfig struct {
	// Countries (ISO alpha-2) the devices roam in, round-robin. Default
	// roamsim's 30 countries on every inhabited continent.
	Countries []string
	// Max bounds the number of devices (0: one per subscriber).
	Max int
	// AttachRate bounds attaches per second (0: roamsim's default).
	AttachRate float64
	// RetryInterval before a device retries a failed attach (0: roamsim's
	// default).
	RetryInterval time.Duration
	// EchoInterval of the SGW's GTP echo to the PGWs (0: roamsim's default).
	EchoInterval time.Duration
}

// Devices is the running visited network: roamsim in Continuous mode in
// the "visited" namespace, in its own process.
type Devices struct {
	c    *Cluster
	base string
}

// StartDevices starts the visited network: one device per subscriber (or
// Max), attaching through every core node's HSS and sending ICMP echo to
// the internet namespace through the breakout of the region serving it.
func (c *Cluster) StartDevices(ctx context.Context, cfg DevicesConfig) (*Devices, error) {
	vs := &VisitedSpec{
		Subscribers: c.subsFile,
		Countries:   cfg.Countries,
		Max:         cfg.Max,
		GTPC:        netip.AddrPortFrom(visitedMember.addr, roamsim.PortGTPC),
		PGWRegions:  map[string]string{},
		Target:      inetMember.addr,
		AttachRate:  cfg.AttachRate,
		Retry:       cfg.RetryInterval,
		Echo:        cfg.EchoInterval,
		Listen:      netip.AddrPortFrom(visitedMember.addr, visitedAPIPort),
	}
	for _, n := range c.fed.Deployment.Nodes {
		if n.Diameter.IsValid() {
			vs.HSS = append(vs.HSS, n.Diameter.String())
		}
		if n.GTPC.IsValid() && n.Region != "" {
			vs.PGWRegions[n.GTPC.Addr().String()] = string(n.Region)
		}
	}
	if err := c.startChild(visitedMember, Spec{Visited: vs, LogLevel: c.cfg.LogLevel}); err != nil {
		return nil, err
	}
	d := &Devices{c: c, base: "http://" + vs.Listen.String()}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if _, err := d.Snapshot(ctx); err == nil {
			return d, nil
		} else if ctx.Err() != nil {
			return nil, fmt.Errorf("netns: visited network API: %w", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Snapshot returns the devices' live report (per device, per region).
func (d *Devices) Snapshot(ctx context.Context) (roamsim.Report, error) {
	return d.call(ctx, http.MethodGet, "/report")
}

// Stop detaches every device and returns the final report; the visited
// network's process then exits.
func (d *Devices) Stop(ctx context.Context) (roamsim.Report, error) {
	return d.call(ctx, http.MethodPost, "/stop")
}

func (d *Devices) call(ctx context.Context, method, path string) (roamsim.Report, error) {
	var rep roamsim.Report
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, nil)
	if err != nil {
		return rep, fmt.Errorf("netns: visited: %w", err)
	}
	resp, err := d.c.http.Do(req)
	if err != nil {
		return rep, fmt.Errorf("netns: visited: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return rep, fmt.Errorf("netns: visited: %s %s: %s", method, path, resp.Status)
	}
	if err := decodeReport(resp.Body, &rep); err != nil {
		return rep, fmt.Errorf("netns: visited: %s: %w", path, err)
	}
	return rep, nil
}

// decodeReport decodes a roamsim report. roamsim.RAT marshals as text but
// has no UnmarshalText, so the devices' "rat" is dropped before decoding
// (every lab device is 4G, RAT's zero value).
func decodeReport(r io.Reader, rep *roamsim.Report) error {
	var raw map[string]any
	if err := json.NewDecoder(r).Decode(&raw); err != nil {
		return err
	}
	if devs, ok := raw["devices"].([]any); ok {
		for _, d := range devs {
			if m, ok := d.(map[string]any); ok {
				delete(m, "rat")
			}
		}
	}
	data, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, rep)
}

// Events returns the device events from the from-th on (roamsim's
// OnEvent stream, in order).
func (d *Devices) Events(ctx context.Context, from int) ([]roamsim.Event, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/events?from=%d", d.base, from), nil)
	if err != nil {
		return nil, fmt.Errorf("netns: visited: %w", err)
	}
	resp, err := d.c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("netns: visited: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("netns: visited: events: %s", resp.Status)
	}
	var evs []roamsim.Event
	if err := json.NewDecoder(resp.Body).Decode(&evs); err != nil {
		return nil, fmt.Errorf("netns: visited: events: %w", err)
	}
	return evs, nil
}

// Live returns the live report with its device list rebuilt from the
// events (roamsim's live snapshot carries aggregates only): per device its
// country, visited PLMN, serving region, state ("attached" or not) and
// whether data passed since its last attach.
func (d *Devices) Live(ctx context.Context) (roamsim.Report, error) {
	rep, err := d.Snapshot(ctx)
	if err != nil {
		return rep, err
	}
	evs, err := d.Events(ctx, 0)
	if err != nil {
		return rep, err
	}
	rep.Devices = DeviceStates(evs)
	return rep, nil
}

// DeviceStates folds device events into one report row per device.
//
// roamsim marks a device attached before it emits EventAttached, so the
// first probe's EventFirstData may arrive before it: a first-data event
// counts for an attach when it came from the same PGW after that attach
// started (the Attached event's time minus its latency).
func DeviceStates(evs []roamsim.Event) []roamsim.DeviceReport {
	countries := roamsim.DefaultCountries()
	type dev struct {
		row       roamsim.DeviceReport
		firstData roamsim.Event // the latest first-data event
	}
	byIMSI := map[topology.IMSI]*dev{}
	var order []topology.IMSI
	for _, e := range evs {
		d, ok := byIMSI[e.IMSI]
		if !ok {
			d = &dev{row: roamsim.DeviceReport{IMSI: e.IMSI, Country: e.Country}}
			for _, c := range countries {
				if c.Alpha2 == e.Country {
					d.row.Visited = c.PLMN.String()
				}
			}
			byIMSI[e.IMSI] = d
			order = append(order, e.IMSI)
		}
		r := &d.row
		switch e.Kind {
		case roamsim.EventAttached:
			r.State, r.Region, r.Data = "attached", e.Region, &roamsim.RTTStats{}
			r.Attaches++
			if f := d.firstData; f.PGW == e.PGW && !f.Time.Before(e.Time.Add(-e.Latency)) {
				r.Data.Received = 1
			}
		case roamsim.EventFirstData:
			d.firstData = e
			if r.State == "attached" && r.Region == e.Region && r.Data != nil {
				r.Data.Received++
			}
		case roamsim.EventAttachFailed:
			r.State = "failed"
		case roamsim.EventCancelled, roamsim.EventBearerDelete, roamsim.EventDetached:
			r.State, r.Data = "detached", nil
		}
	}
	out := make([]roamsim.DeviceReport, 0, len(order))
	for _, i := range order {
		out = append(out, byIMSI[i].row)
	}
	return out
}

// ServedBy counts the attached devices per serving region in a report.
func ServedBy(rep roamsim.Report) map[topology.RegionID]int {
	out := map[topology.RegionID]int{}
	for _, d := range rep.Devices {
		if d.State == "attached" && d.Region != "" {
			out[d.Region]++
		}
	}
	return out
}
