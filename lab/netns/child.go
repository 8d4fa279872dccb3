package netns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/config"
	"github.com/rendezvous-core/rendezvous/federation/consensus"
	"github.com/rendezvous-core/rendezvous/federation/membership"
	"github.com/rendezvous-core/rendezvous/region"
	"github.com/rendezvous-core/rendezvous/roamsim"
	"github.com/rendezvous-core/rendezvous/topology"
)

// Spec is what a child process runs: one node (Node set) or the visited
// network (Visited set). Cluster writes it as JSON and passes its path as
// the child's last argument; the child's entry point calls RunChild.
type Spec struct {
	Node    *NodeSpec    `json:"node,omitempty"`
	Visited *VisitedSpec `json:"visited,omitempty"`
	// LogLevel of the child's text log on its log writer.
	LogLevel string `json:"log_level"`
}

// NodeSpec is one node's region.Config, as files and values.
type NodeSpec struct {
	Config        string                 `json:"config"` // federation file, read with config.Load
	Name          string                 `json:"name"`
	StateDir      string                 `json:"state_dir"`
	RegistryDSN   string                 `json:"registry_dsn,omitempty"`
	KEKFile       string                 `json:"kek_file,omitempty"`
	APITokenFile  string                 `json:"api_token_file"`
	NATInterface  string                 `json:"nat_interface"`
	GossipProfile membership.Profile     `json:"gossip_profile"`
	RaftTiming    consensus.Timing       `json:"raft_timing"`
	Policy        consensus.PolicyConfig `json:"policy"`
	RehomeRate    float64                `json:"rehome_rate"`
	Version       string                 `json:"version"`
}

// VisitedSpec configures the visited network: roamsim in Continuous mode,
// with a small HTTP API on Listen (GET /report: live report without the
// device list; GET /events?from=N: device events from the N-th on; POST
// /stop: detach every device and return the final report).
type VisitedSpec struct {
	Subscribers string            `json:"subscribers"` // CSV file
	Countries   []string          `json:"countries,omitempty"`
	Max         int               `json:"max,omitempty"`
	HSS         []string          `json:"hss"`
	GTPC        netip.AddrPort    `json:"gtpc"`
	PGWRegions  map[string]string `json:"pgw_regions"` // address → region
	Target      netip.Addr        `json:"target"`
	AttachRate  float64           `json:"attach_rate,omitempty"`
	Retry       time.Duration     `json:"retry,omitempty"`
	Echo        time.Duration     `json:"echo,omitempty"`
	Listen      netip.AddrPort    `json:"listen"`
}

// RunChild runs the child described by the spec file until ctx ends (a
// node) or until stopped through its API (the visited network), logging
// to logTo.
func RunChild(ctx context.Context, specFile string, logTo io.Writer) error {
	data, err := os.ReadFile(specFile)
	if err != nil {
		return fmt.Errorf("netns: child spec: %w", err)
	}
	var s Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("netns: child spec %s: %w", specFile, err)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(s.LogLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: lvl}))
	switch {
	case s.Node != nil:
		return runNode(ctx, *s.Node, log)
	case s.Visited != nil:
		return runVisited(ctx, *s.Visited, log)
	}
	return fmt.Errorf("netns: child spec %s: neither node nor visited", specFile)
}

func runNode(ctx context.Context, s NodeSpec, log *slog.Logger) error {
	fed, err := config.Load(s.Config)
	if err != nil {
		return err
	}
	tok, err := os.ReadFile(s.APITokenFile)
	if err != nil {
		return fmt.Errorf("netns: node %s: API token: %w", s.Name, err)
	}
	n, err := region.New(ctx, region.Config{
		Federation:    fed,
		Node:          s.Name,
		StateDir:      s.StateDir,
		RegistryDSN:   s.RegistryDSN,
		KEKFile:       s.KEKFile,
		APIToken:      strings.TrimSpace(string(tok)),
		Breakout:      region.BreakoutConfig{NATInterface: s.NATInterface},
		GossipProfile: s.GossipProfile,
		RaftTiming:    s.RaftTiming,
		Policy:        s.Policy,
		RehomeRate:    s.RehomeRate,
		Version:       s.Version,
		Logger:        log.With("node", s.Name),
	})
	if err != nil {
		return fmt.Errorf("netns: node %s: %w", s.Name, err)
	}
	log.Info("node running", "node", s.Name, "api", n.APIAddr())
	<-ctx.Done()
	return n.Close()
}

func runVisited(ctx context.Context, s VisitedSpec, log *slog.Logger) error {
	f, err := os.Open(s.Subscribers)
	if err != nil {
		return fmt.Errorf("netns: visited: %w", err)
	}
	devs, err := roamsim.LoadSubscribersCSV(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("netns: visited: %w", err)
	}
	if s.Max > 0 && len(devs) > s.Max {
		devs = devs[:s.Max]
	}
	countries := roamsim.DefaultCountries()
	if len(s.Countries) > 0 {
		if countries, err = roamsim.SelectCountries(countries, s.Countries); err != nil {
			return fmt.Errorf("netns: visited: %w", err)
		}
	}
	if err := roamsim.AssignCountries(devs, countries); err != nil {
		return fmt.Errorf("netns: visited: %w", err)
	}
	pgw := map[netip.Addr]topology.RegionID{}
	for a, r := range s.PGWRegions {
		addr, err := netip.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("netns: visited: PGW %q: %w", a, err)
		}
		pgw[addr] = topology.RegionID(r)
	}
	var (
		evMu   sync.Mutex // guards events
		events []roamsim.Event
	)
	sim, err := roamsim.New(roamsim.Config{
		OnEvent: func(e roamsim.Event) {
			evMu.Lock()
			events = append(events, e)
			evMu.Unlock()
		},
		Devices:       devs,
		Countries:     countries,
		HSS:           s.HSS,
		GTPC:          s.GTPC,
		PGWRegions:    pgw,
		Target:        s.Target,
		Mode:          roamsim.Continuous,
		AttachRate:    s.AttachRate,
		RetryInterval: s.Retry,
		EchoInterval:  s.Echo,
		Logger:        log.With("component", "roamsim"),
	})
	if err != nil {
		return fmt.Errorf("netns: visited: %w", err)
	}
	ln, err := net.Listen("tcp", s.Listen.String())
	if err != nil {
		return fmt.Errorf("netns: visited API: %w", err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	done := make(chan struct{})
	var (
		mu     sync.Mutex // guards following fields
		final  roamsim.Report
		runErr error
	)
	go func() {
		defer close(done)
		rep, err := sim.Run(runCtx)
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		mu.Lock()
		final, runErr = rep, err
		mu.Unlock()
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /report", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, sim.Snapshot())
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		from, _ := strconv.Atoi(r.URL.Query().Get("from"))
		evMu.Lock()
		var out []roamsim.Event
		if from >= 0 && from < len(events) {
			out = append(out, events[from:]...)
		}
		evMu.Unlock()
		writeJSON(w, out)
	})
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, _ *http.Request) {
		stopRun()
		<-done
		mu.Lock()
		rep, err := final, runErr
		mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, rep)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("visited network running", "devices", len(devs), "api", s.Listen)
	select {
	case <-done:
		// Stopped through the API or ctx. Shutdown waits for an active
		// /stop handler to answer.
	case err := <-serveErr:
		stopRun()
		<-done
		return fmt.Errorf("netns: visited API: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-serveErr
	mu.Lock()
	defer mu.Unlock()
	return runErr
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
