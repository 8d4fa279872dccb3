package lab

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/config"
	"github.com/rendezvous-core/rendezvous/federation/consensus"
	"github.com/rendezvous-core/rendezvous/federation/membership"
	"github.com/rendezvous-core/rendezvous/federation/membership/faultnet"
	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/region"
	"github.com/rendezvous-core/rendezvous/topology"
)

// Config configures a lab.
type Config struct {
	// StateDir holds the nodes' state, the registry file and the generated
	// subscribers. Required.
	StateDir string
	// RegistryDSN is the shared registry; "" → SQLite in StateDir.
	RegistryDSN string
	// SubscribersFile is a CSV (imsi,msisdn,ki,opc,amf,apn,home_region, hex
	// keys) to provision; "" → Subscribers generated ones.
	SubscribersFile string
	// Subscribers is how many subscribers to generate without a file.
	// Default 200.
	Subscribers int
	// APIToken is the operator API token of every node; "" → random.
	APIToken string
	// Breakout configures every node's egress. Zero → the tun driver with
	// NAT out of the lab's internet namespace veth.
	Breakout region.BreakoutConfig
	// NoInternet skips the internet namespace (the breakouts then NAT to
	// whatever interface routes the traffic).
	NoInternet bool
	// GossipProfile is the membership timing; zero → the WAN profile.
	GossipProfile membership.Profile
	// RaftTiming and Policy tune consensus (tests shorten them).
	RaftTiming consensus.Timing
	Policy     consensus.PolicyConfig
	// RehomeRate is each node's re-homing rate (devices/s). Default 20.
	RehomeRate float64
	// Version is shown in status.
	Version string
	// Logger receives the nodes' logs; nil discards.
	Logger *slog.Logger
}

// Lab is a running federation on one machine.
type Lab struct {
	cfg       Config
	fed       *config.Federation
	log       *slog.Logger
	token     string
	kek       []byte
	dsn       string
	nodeDSN   string
	subsFile  string
	internet  *Internet
	provision *registry.Store
	bcfg      region.BreakoutConfig
	faults    *faultnet.Network
	regProxy  *tcpProxy

	mu    sync.Mutex // guards nodes
	nodes map[string]*region.Node
	order []string

	closeOnce sync.Once
	closeErr  error
}

// Start provisions the subscribers and starts every node of the lab
// federation (config.Lab). On error, everything started is stopped.
func Start(ctx context.Context, cfg Config) (_ *Lab, err error) {
	if cfg.StateDir == "" {
		return nil, errors.New("lab: StateDir is required")
	}
	if cfg.Subscribers == 0 {
		cfg.Subscribers = 200
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Policy.RTTInterval == 0 {
		// On loopback every measured RTT is ~0.1 ms: committing that matrix
		// would steer by noise. The lab steers by the static estimates.
		cfg.Policy.RTTInterval = -1
	}
	l := &Lab{cfg: cfg, fed: config.Lab(), log: cfg.Logger, nodes: map[string]*region.Node{}}
	defer func() {
		if err != nil {
			_ = l.Close()
		}
	}()
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l.token = cfg.APIToken
	if l.token == "" {
		l.token = randomHex(16)
	}
	l.kek = make([]byte, 32)
	if _, err := rand.Read(l.kek); err != nil {
		return nil, err
	}
	l.dsn = cfg.RegistryDSN
	if l.dsn == "" {
		l.dsn = "sqlite:" + filepath.Join(cfg.StateDir, "registry.db")
	}

	// Subscribers: a given file, or generated ones written to a file the
	// visited-network emulator reads too (it knows the SIMs' keys).
	l.subsFile = cfg.SubscribersFile
	if l.subsFile == "" {
		l.subsFile = filepath.Join(cfg.StateDir, "subscribers.csv")
		if err := GenerateSubscribers(l.subsFile, cfg.Subscribers); err != nil {
			return nil, err
		}
	}
	if err := l.provisionSubscribers(ctx); err != nil {
		return nil, err
	}

	bcfg := cfg.Breakout
	if !cfg.NoInternet && bcfg.NewEgress == nil {
		in, err := StartInternet(defaultInternetPlan())
		if err != nil {
			return nil, err
		}
		l.internet = in
		if bcfg.NATInterface == "" {
			bcfg.NATInterface = in.HostIface
		}
	}
	l.bcfg = bcfg
	if strings.HasPrefix(l.dsn, "postgres://") || strings.HasPrefix(l.dsn, "postgresql://") {
		// The nodes reach PostgreSQL through a proxy the drills can cut.
		u, err := url.Parse(l.dsn)
		if err != nil {
			return nil, fmt.Errorf("lab: registry DSN: %w", err)
		}
		target := u.Host
		if u.Port() == "" {
			target = net.JoinHostPort(u.Hostname(), "5432")
		}
		p, err := newTCPProxy(netip.MustParseAddrPort("127.0.7.1:0"), target)
		if err != nil {
			return nil, fmt.Errorf("lab: registry proxy: %w", err)
		}
		l.regProxy = p
		u.Host = p.Addr().String()
		l.nodeDSN = u.String()
	} else {
		l.nodeDSN = l.dsn
	}
	// Drills cut gossip and raft links through a fault network (tc netem
	// is not available; federation/membership/faultnet).
	l.faults = faultnet.New(uint64(time.Now().UnixNano()))
	for _, n := range l.fed.Deployment.Nodes {
		l.log.Info("starting node", "node", n.Name, "region", n.Region, "role", n.Role)
		if err := l.StartNode(ctx, n.Name, bcfg); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (l *Lab) provisionSubscribers(ctx context.Context) error {
	f, err := os.Open(l.subsFile)
	if err != nil {
		return fmt.Errorf("lab: subscribers: %w", err)
	}
	defer f.Close()
	store, err := registry.Open(ctx, registry.Config{DSN: l.dsn, KEK: l.kek, KEKID: "lab", Region: topology.JP,
		Logger: l.log.With("component", "provisioning")})
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	rep, err := store.Import(ctx, bufio.NewReader(f), registry.ImportCSV)
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("lab: import %s: %w", l.subsFile, err)
	}
	if rep.Failed > 0 {
		for _, e := range rep.Errors {
			l.log.Warn("subscriber row rejected", "file", l.subsFile, "err", e)
		}
	}
	l.log.Info("subscribers provisioned", "file", l.subsFile, "rows", rep.Rows, "imported", rep.Imported, "failed", rep.Failed)
	if rep.Imported == 0 {
		return fmt.Errorf("lab: %s: no subscriber could be imported (%d rows, %d failed)", l.subsFile, rep.Rows, rep.Failed)
	}
	return nil
}

// StartNode starts (or restarts) one node of the lab.
func (l *Lab) StartNode(ctx context.Context, name string, bcfg region.BreakoutConfig) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.nodes[name]; ok {
		return fmt.Errorf("lab: node %s is already running", name)
	}
	n, err := region.New(ctx, region.Config{
		Federation:    l.fed,
		Node:          name,
		StateDir:      filepath.Join(l.cfg.StateDir, name),
		RegistryDSN:   l.nodeDSN,
		KEK:           l.kek,
		KEKID:         "lab",
		APIToken:      l.token,
		Breakout:      bcfg,
		Faults:        l.faults,
		GossipProfile: l.cfg.GossipProfile,
		RaftTiming:    l.cfg.RaftTiming,
		Policy:        l.cfg.Policy,
		RehomeRate:    l.cfg.RehomeRate,
		Version:       l.cfg.Version,
		Logger:        l.log,
	})
	if err != nil {
		return fmt.Errorf("lab: start %s: %w", name, err)
	}
	if _, seen := indexOf(l.order, name); !seen {
		l.order = append(l.order, name)
	}
	l.nodes[name] = n
	return nil
}

// Kill stops a node the way a crash would look to its peers: no graceful
// leave (its gossip peers must detect it).
func (l *Lab) Kill(name string) error {
	l.mu.Lock()
	n, ok := l.nodes[name]
	delete(l.nodes, name)
	l.mu.Unlock()
	if !ok {
		return fmt.Errorf("lab: node %s is not running", name)
	}
	return n.Close()
}

// Node returns a running node by name.
func (l *Lab) Node(name string) (*region.Node, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.nodes[name]
	return n, ok
}

// Nodes returns the running nodes in the federation file's order.
func (l *Lab) Nodes() []*region.Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*region.Node
	for _, name := range l.order {
		if n, ok := l.nodes[name]; ok {
			out = append(out, n)
		}
	}
	return out
}

// Federation returns the lab's federation file.
func (l *Lab) Federation() *config.Federation { return l.fed }

// Token returns the operator API token.
func (l *Lab) Token() string { return l.token }

// SubscribersFile returns the CSV the lab provisioned.
func (l *Lab) SubscribersFile() string { return l.subsFile }

// Internet returns the internet namespace, nil without one.
func (l *Lab) Internet() *Internet { return l.internet }

// WaitLeader waits until every running node agrees on a raft leader.
func (l *Lab) WaitLeader(ctx context.Context) (string, error) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		leader := ""
		agree := true
		for _, n := range l.Nodes() {
			id, _ := n.Consensus().Leader()
			if id == "" || (leader != "" && id != leader) {
				agree = false
				break
			}
			leader = id
		}
		if agree && leader != "" {
			return leader, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("lab: no raft leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Close stops every node and removes the internet namespace.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		var errs []error
		nodes := l.Nodes()
		for i := len(nodes) - 1; i >= 0; i-- {
			if err := nodes[i].Close(); err != nil {
				errs = append(errs, err)
			}
		}
		l.mu.Lock()
		l.nodes = map[string]*region.Node{}
		l.mu.Unlock()
		if l.internet != nil {
			errs = append(errs, l.internet.Close())
		}
		if l.regProxy != nil {
			errs = append(errs, l.regProxy.Close())
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

func indexOf(ss []string, s string) (int, bool) {
	for i, x := range ss {
		if x == s {
			return i, true
		}
	}
	return -1, false
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}

// BreakoutConfig returns the breakout configuration the lab's nodes run
// with (for restarting a node).
func (l *Lab) BreakoutConfig() region.BreakoutConfig { return l.bcfg }

// SetRegistryDown cuts (true) or restores (false) the nodes' connections to
// a PostgreSQL registry.
func (l *Lab) SetRegistryDown(down bool) error {
	if l.regProxy == nil {
		return errors.New("lab: registry outages need a PostgreSQL registry (--registry postgres://…)")
	}
	l.regProxy.SetDown(down)
	return nil
}
