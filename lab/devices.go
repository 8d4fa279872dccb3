package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/rendezvous-core/rendezvous/roamsim"
	"github.com/rendezvous-core/rendezvous/topology"
)

// VisitedNetwork is the address of the visited networks' MMEs, SGWs and
// SGSNs in the lab: outside every region's lab address (DESIGN.md §5).
var VisitedNetwork = netip.MustParseAddr("127.0.6.1")

// DevicesConfig configures the lab's roaming devices.
type DevicesConfig struct {
	// Countries the devices roam in (round-robin). Default
	// roamsim.DefaultCountries (30 countries, every inhabited continent).
	Countries []roamsim.Country
	// Max bounds the number of devices (0: one per subscriber).
	Max int
	// Mode: roamsim.Continuous keeps devices attached and sending until
	// stopped; roamsim.OneShot attaches, measures and detaches.
	Mode roamsim.Mode
	// AttachRate bounds attaches per second (0: roamsim's default).
	AttachRate float64
	// EchoInterval is how often the SGWs send Echo to the PGWs (roamsim's
	// default when zero): a changed Recovery value is a PGW restart.
	EchoInterval time.Duration
	// OnEvent receives every device event (optional; must be fast).
	OnEvent func(roamsim.Event)
	// Logger for the emulator; nil discards.
	Logger *slog.Logger
}

// Devices is the lab's running visited network.
type Devices struct {
	sim  *roamsim.Sim
	done chan struct{}
	stop context.CancelFunc

	mu     sync.Mutex // guards following fields
	report roamsim.Report
	err    error
}

// StartDevices runs roamsim against the lab: one device per subscriber of
// the lab's file, roaming in the given countries, attaching through every
// region's HSS and sending ICMP to the lab's internet target.
func (l *Lab) StartDevices(ctx context.Context, cfg DevicesConfig) (*Devices, error) {
	f, err := os.Open(l.subsFile)
	if err != nil {
		return nil, fmt.Errorf("lab: devices: %w", err)
	}
	devs, err := roamsim.LoadSubscribersCSV(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("lab: devices: %w", err)
	}
	if cfg.Max > 0 && len(devs) > cfg.Max {
		devs = devs[:cfg.Max]
	}
	if len(cfg.Countries) == 0 {
		cfg.Countries = roamsim.DefaultCountries()
	}
	if err := roamsim.AssignCountries(devs, cfg.Countries); err != nil {
		return nil, fmt.Errorf("lab: devices: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var hss []string
	pgwRegions := map[netip.Addr]topology.RegionID{}
	for _, n := range l.fed.Deployment.Nodes {
		if n.Diameter.IsValid() {
			hss = append(hss, n.Diameter.String())
		}
		if n.GTPC.IsValid() && n.Region != "" {
			pgwRegions[n.GTPC.Addr()] = n.Region
		}
	}
	var target netip.Addr
	if l.internet != nil {
		target = l.internet.Target
	}
	sim, err := roamsim.New(roamsim.Config{
		Devices:      devs,
		Countries:    cfg.Countries,
		HSS:          hss,
		GTPC:         netip.AddrPortFrom(VisitedNetwork, roamsim.PortGTPC),
		PGWRegions:   pgwRegions,
		Target:       target,
		Mode:         cfg.Mode,
		AttachRate:   cfg.AttachRate,
		OnEvent:      cfg.OnEvent,
		EchoInterval: cfg.EchoInterval,
		Logger:       cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("lab: devices: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	d := &Devices{sim: sim, done: make(chan struct{}), stop: cancel}
	go func() {
		defer close(d.done)
		rep, err := sim.Run(ctx)
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			err = nil
		}
		d.mu.Lock()
		d.report, d.err = rep, err
		d.mu.Unlock()
	}()
	return d, nil
}

// Snapshot returns the devices' live report.
func (d *Devices) Snapshot() roamsim.Report { return d.sim.Snapshot() }

// Done is closed when the emulator's run ended (OneShot, or stopped).
func (d *Devices) Done() <-chan struct{} { return d.done }

// Stop ends the run (detaching every device) and returns the final report.
func (d *Devices) Stop() (roamsim.Report, error) {
	d.stop()
	<-d.done
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.report, d.err
}

// Assessment says whether the devices ended where steering must put them.
type Assessment struct {
	Devices  int `json:"devices"`
	Attached int `json:"attached"`
	// AtNearest counts attached devices served by the region topology
	// ranks nearest to their visited country among the healthy regions.
	AtNearest  int      `json:"at_nearest_region"`
	NotNearest []string `json:"not_at_nearest_region,omitempty"`
	WithData   int      `json:"passed_data"`
	// Continents and countries of the devices that attached and passed data.
	Continents []string `json:"continents"`
	Countries  int      `json:"countries"`
	// OK: every device attached at its nearest healthy region and passed data.
	OK bool `json:"ok"`
}

// Assess checks a report against the nearest healthy region of each
// device's visited country; healthy(region) says which regions count.
func Assess(rep roamsim.Report, countries []roamsim.Country, healthy func(topology.RegionID) bool) Assessment {
	a := Assessment{Devices: len(rep.Devices)}
	continents := map[string]bool{}
	cs := map[string]bool{}
	for _, d := range rep.Devices {
		if d.Region == "" || d.State != "attached" && d.Data == nil {
			continue
		}
		a.Attached++
		plmn, err := topology.ParsePLMN(d.Visited)
		if err != nil {
			continue
		}
		want := nearestHealthy(plmn.MCC, healthy)
		if d.Region == want {
			a.AtNearest++
		} else {
			a.NotNearest = append(a.NotNearest, fmt.Sprintf("%s in %s: %s, nearest %s", d.IMSI, d.Country, d.Region, want))
		}
		if d.Data != nil && d.Data.Received > 0 {
			a.WithData++
			cs[d.Country] = true
			if c, ok := roamsim.CountryByMCC(countries, plmn.MCC); ok && c.Continent != "" {
				continents[c.Continent] = true
			}
		}
	}
	for c := range continents {
		a.Continents = append(a.Continents, c)
	}
	sort.Strings(a.Continents)
	a.Countries = len(cs)
	a.OK = a.Devices > 0 && a.Attached == a.Devices && a.AtNearest == a.Attached && a.WithData == a.Attached
	return a
}

// nearestHealthy is the region topology ranks nearest to a visited MCC
// among those healthy accepts (nil: all), or "" for an MCC without a
// ranking.
func nearestHealthy(mcc topology.MCC, healthy func(topology.RegionID) bool) topology.RegionID {
	rank, err := topology.Rank(mcc)
	if err != nil {
		return ""
	}
	for _, e := range rank {
		if healthy == nil || healthy(e.Region) {
			return e.Region
		}
	}
	return ""
}
