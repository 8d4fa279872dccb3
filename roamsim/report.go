package roamsim

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

// Report is the result of a Run (and, without Finished, of a Snapshot).
type Report struct {
	Mode      string         `json:"mode"`
	Started   time.Time      `json:"started"`
	Finished  time.Time      `json:"finished"`
	Totals    Aggregate      `json:"totals"`
	Regions   []Aggregate    `json:"regions"`   // by region served
	Countries []Aggregate    `json:"countries"` // by visited country
	Devices   []DeviceReport `json:"devices,omitempty"`
	Counters  Counters       `json:"counters"`
}

// Counters are emulator-wide event counts.
type Counters struct {
	AttachOK        uint64 `json:"attach_ok"`
	AttachFailed    uint64 `json:"attach_failed"`
	Reattaches      uint64 `json:"reattaches"`
	Resyncs         uint64 `json:"resyncs"`
	CLR             uint64 `json:"clr"`
	IDR             uint64 `json:"idr"`
	DeleteBearer    uint64 `json:"delete_bearer"`
	Detached        uint64 `json:"detached"`
	ProbesSent      uint64 `json:"probes_sent"`
	ProbesOK        uint64 `json:"probes_ok"`
	ProbesLost      uint64 `json:"probes_lost"`
	GTPRetransmits  uint64 `json:"gtp_retransmits"`
	GTPMalformed    uint64 `json:"gtp_malformed"`
	ErrorIndication uint64 `json:"gtpu_error_indications"`
	DiameterConnect uint64 `json:"diameter_connects"`
	PeerRestarts    uint64 `json:"pgw_restarts"`
	EchoFailures    uint64 `json:"echo_failures"`
	ModifyBearerOK  uint64 `json:"modify_bearer_ok"`
}

// DeviceReport is one device's outcome.
type DeviceReport struct {
	IMSI    topology.IMSI     `json:"imsi"`
	Country string            `json:"country"`
	Visited string            `json:"visited_plmn"`
	RAT     RAT               `json:"rat"`
	MME     string            `json:"mme,omitempty"` // Origin-Host of the serving MME
	Home    topology.RegionID `json:"home_region,omitempty"`
	State   string            `json:"state"`
	Region  topology.RegionID `json:"region,omitempty"`
	PGW     string            `json:"pgw,omitempty"`
	PGWHost string            `json:"pgw_host,omitempty"`
	UE      string            `json:"ue_ip,omitempty"`
	// AttachMS is the latency of the last successful attach (AIR to
	// CSResp), milliseconds.
	AttachMS   float64   `json:"attach_ms,omitempty"`
	Attaches   int       `json:"attaches"`
	Reattaches int       `json:"reattaches"`
	Cancels    int       `json:"cancels"`
	Data       *RTTStats `json:"data,omitempty"`
	// Failures: the last few failures (FailureCount counts all).
	Failures     []Failure `json:"failures,omitempty"`
	FailureCount int       `json:"failure_count"`
}

// RTTStats summarises a device's data round trips, milliseconds.
type RTTStats struct {
	Sent     uint64  `json:"sent"`
	Received uint64  `json:"received"`
	MinMS    float64 `json:"min_ms"`
	AvgMS    float64 `json:"avg_ms"`
	MaxMS    float64 `json:"max_ms"`
	LastMS   float64 `json:"last_ms"`
}

// Aggregate summarises devices sharing a key (region, country, or all).
type Aggregate struct {
	Key        string  `json:"key"`
	Devices    int     `json:"devices"`
	Attached   int     `json:"attached"` // attached now (or at the end, before detach)
	EverOK     int     `json:"ever_attached"`
	Failed     int     `json:"failed"` // devices whose last attempt failed
	Reattaches int     `json:"reattaches"`
	AttachP50  float64 `json:"attach_p50_ms"`
	AttachP95  float64 `json:"attach_p95_ms"`
	RTTP50     float64 `json:"rtt_p50_ms"`
	RTTP95     float64 `json:"rtt_p95_ms"`
	Sent       uint64  `json:"data_sent"`
	Received   uint64  `json:"data_received"`
	// Causes counts failures by stage and cause code ("ULR 5004", "USIM
	// MAC failure", "CSR timeout" …).
	Causes map[string]int `json:"causes,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (s *Sim) deviceReport(d *devState) DeviceReport {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := DeviceReport{IMSI: d.dev.IMSI, Country: d.country, Visited: d.dev.Visited.String(), RAT: d.dev.RAT,
		State: d.ph.String(), Region: d.region, PGWHost: d.pgwHost, Attaches: d.attaches,
		Reattaches: d.reattaches, Cancels: d.cancels, FailureCount: d.failCount, Home: d.dev.HomeRegion}
	if d.mme != nil {
		r.MME = d.mme.originHost
	}
	if d.hasSess {
		r.State = phAttached.String()
	}
	if d.pgw.IsValid() {
		r.PGW = d.pgw.String()
	}
	if d.sess.UE.IsValid() {
		r.UE = d.sess.UE.String()
	}
	if d.attaches > 0 {
		r.AttachMS = ms(d.attachLatency)
	}
	if d.sent > 0 {
		r.Data = &RTTStats{Sent: d.sent, Received: d.recv, MinMS: ms(d.rttMin), MaxMS: ms(d.rttMax), LastMS: ms(d.rttLast)}
		if d.rttN > 0 {
			r.Data.AvgMS = ms(d.rttSum / time.Duration(d.rttN))
		}
	}
	r.Failures = slices.Clone(d.failures)
	return r
}

func (s *Sim) counters() Counters {
	c := Counters{
		AttachOK: s.c.attachOK.Load(), AttachFailed: s.c.attachFail.Load(), Reattaches: s.c.reattach.Load(),
		Resyncs: s.c.resync.Load(), CLR: s.c.clr.Load(), IDR: s.c.idr.Load(), DeleteBearer: s.c.dbr.Load(),
		Detached: s.c.detached.Load(), ProbesSent: s.c.probesSent.Load(), ProbesOK: s.c.probesOK.Load(),
		ProbesLost: s.c.probesLost.Load(), PeerRestarts: s.c.peerRestarts.Load(), EchoFailures: s.c.echoFail.Load(),
		ModifyBearerOK: s.c.mbrOK.Load(),
	}
	s.sockMu.Lock()
	gtpc, dp := s.gtpc, s.dp
	s.sockMu.Unlock()
	if gtpc != nil {
		c.GTPRetransmits = gtpc.retransmits.Load()
		c.GTPMalformed = gtpc.malformed.Load()
	}
	if dp != nil {
		c.ErrorIndication = dp.errInd.Load()
		c.GTPMalformed += dp.malformed.Load()
	}
	for _, m := range s.mmes {
		c.DiameterConnect += m.connects.Load()
	}
	return c
}

// Snapshot returns the live state (safe to call concurrently with Run):
// aggregates and counters, without the per-device list.
func (s *Sim) Snapshot() Report {
	r := s.build(time.Time{}, false)
	return r
}

func (s *Sim) report(now time.Time) Report { return s.build(now, true) }

func (s *Sim) build(now time.Time, withDevices bool) Report {
	devs := make([]DeviceReport, len(s.devs))
	for i, d := range s.devs {
		devs[i] = s.deviceReport(d)
	}
	s.sockMu.Lock()
	started := s.started
	s.sockMu.Unlock()
	r := Report{Mode: s.cfg.Mode.String(), Started: started, Finished: now, Counters: s.counters()}
	r.Totals = aggregate("all", devs)
	byRegion, byCountry := map[string][]DeviceReport{}, map[string][]DeviceReport{}
	for _, d := range devs {
		reg := string(d.Region)
		if reg == "" {
			reg = "-"
		}
		byRegion[reg] = append(byRegion[reg], d)
		byCountry[d.Country] = append(byCountry[d.Country], d)
	}
	for _, k := range sortedKeys(byRegion) {
		r.Regions = append(r.Regions, aggregate(k, byRegion[k]))
	}
	for _, k := range sortedKeys(byCountry) {
		r.Countries = append(r.Countries, aggregate(k, byCountry[k]))
	}
	if withDevices {
		r.Devices = devs
	}
	return r
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func aggregate(key string, devs []DeviceReport) Aggregate {
	a := Aggregate{Key: key, Devices: len(devs)}
	var att, rtt []float64
	for _, d := range devs {
		if d.State == phAttached.String() {
			a.Attached++
		}
		if d.Attaches > 0 {
			a.EverOK++
			att = append(att, d.AttachMS)
		}
		if d.State == phFailed.String() {
			a.Failed++
		}
		a.Reattaches += d.Reattaches
		if d.Data != nil {
			a.Sent += d.Data.Sent
			a.Received += d.Data.Received
			if d.Data.Received > 0 {
				rtt = append(rtt, d.Data.AvgMS)
			}
		}
		for _, f := range d.Failures {
			if a.Causes == nil {
				a.Causes = map[string]int{}
			}
			a.Causes[causeKey(f)]++
		}
	}
	a.AttachP50, a.AttachP95 = pct(att, 50), pct(att, 95)
	a.RTTP50, a.RTTP95 = pct(rtt, 50), pct(rtt, 95)
	return a
}

// causeKey is a short, low-cardinality failure label.
func causeKey(f Failure) string {
	if f.Code != 0 {
		return fmt.Sprintf("%s %d", f.Stage, f.Code)
	}
	c := f.Cause
	for _, k := range []string{"timeout", "MAC failure", "synch failure", "KASME mismatch", "AMF separation",
		"RES does not match", "connection down", "malformed"} {
		if strings.Contains(c, k) {
			return f.Stage + " " + k
		}
	}
	if len(c) > 40 {
		c = c[:40]
	}
	return f.Stage + " " + c
}

func pct(xs []float64, p int) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := (len(xs)*p + 99) / 100
	return xs[max(0, min(len(xs)-1, i-1))]
}

// WriteTable writes the report as human-readable tables.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', tabwriter.AlignRight)
	head := "\tdevices\tattached\tever\tfailed\treattach\tattach p50 ms\tp95\trtt p50 ms\tp95\tdata sent\trecv\t"
	row := func(a Aggregate) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t\n", a.Key, a.Devices, a.Attached,
			a.EverOK, a.Failed, a.Reattaches, a.AttachP50, a.AttachP95, a.RTTP50, a.RTTP95, a.Sent, a.Received)
	}
	fmt.Fprintf(tw, "region%s\n", head)
	for _, a := range r.Regions {
		row(a)
	}
	row(r.Totals)
	fmt.Fprintf(tw, "\t\n")
	fmt.Fprintf(tw, "country%s\n", head)
	for _, a := range r.Countries {
		row(a)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Totals.Causes) > 0 {
		fmt.Fprintln(w, "\nfailures:")
		for _, k := range sortedKeys(r.Totals.Causes) {
			fmt.Fprintf(w, "  %6d  %s\n", r.Totals.Causes[k], k)
		}
	}
	c := r.Counters
	_, err := fmt.Fprintf(w, "\nattach ok %d, failed %d, reattach %d, resync %d, CLR %d, IDR %d, delete-bearer %d, probes %d/%d (lost %d), gtp retransmits %d, malformed %d, diameter connects %d\n",
		c.AttachOK, c.AttachFailed, c.Reattaches, c.Resyncs, c.CLR, c.IDR, c.DeleteBearer, c.ProbesOK, c.ProbesSent,
		c.ProbesLost, c.GTPRetransmits, c.GTPMalformed, c.DiameterConnect)
	return err
}
