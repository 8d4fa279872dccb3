package region

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rendezvous-core/rendezvous/breakout"
	"github.com/rendezvous-core/rendezvous/federation/consensus"
	"github.com/rendezvous-core/rendezvous/federation/membership"
	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/region/ggsn"
	"github.com/rendezvous-core/rendezvous/region/gtpc"
	"github.com/rendezvous-core/rendezvous/region/hss"
	"github.com/rendezvous-core/rendezvous/region/opapi"
	"github.com/rendezvous-core/rendezvous/region/pgw"
	"github.com/rendezvous-core/rendezvous/region/session"
	"github.com/rendezvous-core/rendezvous/topology"
)

// Node is one running rendezvous node. It owns every component it built and
// every goroutine they started; Close stops them in reverse order.
type Node struct {
	cfg     Config
	self    topology.Node
	log     *slog.Logger
	metrics *prometheus.Registry

	store    *registry.Store // nil on the witness
	members  *membership.Membership
	cons     *consensus.Node
	user     *breakout.Breakout // nil on the witness
	sessions *session.Table
	gtp      *gtpc.Endpoint
	pgw      *pgw.PGW
	ggsn     *ggsn.GGSN
	hss      *hss.Server
	steer    *committedSteerer // the HSS's and re-homing's steering
	rehomer  *rehomer
	api      *opapi.Server

	// closers run in reverse order by Close.
	closers []func() error

	closeOnce sync.Once
	closeErr  error
}

// New builds and starts the node named cfg.Node. On error, everything
// already started is stopped again.
func New(ctx context.Context, cfg Config) (_ *Node, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	self, err := cfg.Federation.Node(cfg.Node)
	if err != nil {
		return nil, fmt.Errorf("region: %w", err)
	}
	n := &Node{
		cfg:     cfg,
		self:    self,
		log:     cfg.Logger.With("node", self.Name),
		metrics: prometheus.NewRegistry(),
	}
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("region: state dir: %w", err)
	}
	// One registry per node: its /metrics shows only this node.
	var reg prometheus.Registerer = n.metrics
	n.metrics.MustRegister(collectors.NewGoCollector())

	core := self.Role == topology.RoleCore
	if core {
		if err := n.startRegistry(ctx, reg); err != nil {
			return nil, err
		}
	}
	if err := n.startFederation(reg); err != nil {
		return nil, err
	}
	if core {
		if err := n.startCore(reg); err != nil {
			return nil, err
		}
	}
	if err := n.startAPI(); err != nil {
		return nil, err
	}
	n.log.Info("node started", "region", self.Region, "role", self.Role)
	return n, nil
}

func (n *Node) addCloser(name string, f func() error) {
	n.closers = append(n.closers, func() error {
		if err := f(); err != nil {
			return fmt.Errorf("close %s: %w", name, err)
		}
		return nil
	})
}

func (n *Node) startRegistry(ctx context.Context, reg prometheus.Registerer) error {
	if n.cfg.RegistryDSN == "" {
		return errors.New("region: RegistryDSN is required for a core node")
	}
	slices := map[topology.RegionID][2]uint8{}
	for _, s := range n.cfg.Federation.Deployment.Sites {
		slices[s.Region] = [2]uint8{s.IND.First, s.IND.Last}
	}
	store, err := registry.Open(ctx, registry.Config{
		DSN:        n.cfg.RegistryDSN,
		KEKFile:    n.cfg.KEKFile,
		KEK:        n.cfg.KEK,
		KEKID:      n.cfg.KEKID,
		Region:     n.self.Region,
		INDSlices:  slices,
		CacheTTL:   n.cfg.RegistryCacheTTL,
		OnChange:   n.broadcastInvalidation,
		Logger:     n.log.With("component", "registry"),
		Registerer: reg,
	})
	if err != nil {
		return fmt.Errorf("region: %w", err)
	}
	n.store = store
	n.addCloser("registry", store.Close)
	return nil
}

// broadcastInvalidation tells the other nodes' caches that a subscriber
// changed (registry.Config.OnChange). It must not block.
func (n *Node) broadcastInvalidation(imsi topology.IMSI, revision int64) {
	if m := n.members; m != nil {
		if err := m.Broadcast(membership.Invalidation{IMSI: imsi, Revision: revision}); err != nil {
			n.log.Debug("invalidation broadcast dropped", "err", err)
		}
	}
}

func (n *Node) startFederation(reg prometheus.Registerer) error {
	dep := n.cfg.Federation.Deployment
	var seeds []string
	for _, o := range dep.Nodes {
		if o.Gossip.IsValid() && o.Name != n.self.Name {
			seeds = append(seeds, o.Gossip.String())
		}
	}
	role := membership.Role(n.self.Role)
	addrs := map[string]string{}
	for _, ep := range n.self.Endpoints() {
		addrs[string(ep.Name)] = ep.Addr.String()
	}
	mcfg := membership.Config{
		Name:         n.self.Name,
		Region:       n.self.Region,
		Role:         role,
		Version:      n.cfg.Version,
		Addrs:        addrs,
		BindAddr:     n.self.Gossip.Addr().String(),
		BindPort:     int(n.self.Gossip.Port()),
		Seeds:        seeds,
		SecretKey:    n.cfg.GossipKey,
		Label:        n.cfg.Federation.Settings.ClusterLabel,
		Profile:      n.cfg.GossipProfile,
		LeaveOnClose: n.cfg.LeaveOnClose,
		Logger:       n.cfg.Logger,
		Registerer:   reg,
	}
	if n.cfg.Faults != nil {
		mcfg.WrapTransport = n.cfg.Faults.Memberlist(n.self.Gossip.Addr())
	}
	if n.store != nil {
		store := n.store
		mcfg.OnInvalidation = func(inv membership.Invalidation) { store.Invalidate(inv.IMSI, inv.Revision) }
	}
	m, err := membership.New(mcfg)
	if err != nil {
		return fmt.Errorf("region: %w", err)
	}
	n.members = m
	n.addCloser("membership", m.Close)

	var regions []topology.RegionID
	for _, s := range dep.Sites {
		regions = append(regions, s.Region)
	}
	servers, voter := raftServers(dep.Nodes, n.self.Name)
	var stream raft.StreamLayer
	if n.cfg.Faults != nil {
		if stream, err = n.cfg.Faults.Listen(n.self.Raft.Addr(), int(n.self.Raft.Port())); err != nil {
			return fmt.Errorf("region: raft listener: %w", err)
		}
	}
	c, err := consensus.New(consensus.Config{
		StreamLayer: stream,
		ID:          n.self.Name,
		Regions:     regions,
		BindAddr:    n.self.Raft.String(),
		DataDir:     filepath.Join(n.cfg.StateDir, "raft"),
		Servers:     servers,
		Bootstrap:   voter,
		View:        m,
		Timing:      n.cfg.RaftTiming,
		Policy:      n.cfg.Policy,
		Logger:      n.cfg.Logger,
		Registerer:  reg,
	})
	if err != nil {
		return fmt.Errorf("region: %w", err)
	}
	n.cons = c
	n.addCloser("consensus", c.Close)
	return nil
}

// raftServers picks the voters: the first core node of each region and every
// witness (DESIGN.md §4: one voter per region plus a witness); the others
// join as non-voters.
func raftServers(nodes []topology.Node, self string) (servers []consensus.Server, selfVoter bool) {
	seen := map[topology.RegionID]bool{}
	for _, o := range nodes {
		if !o.Raft.IsValid() {
			continue
		}
		v := false
		switch o.Role {
		case topology.RoleWitness:
			v = true
		case topology.RoleCore:
			if !seen[o.Region] {
				seen[o.Region], v = true, true
			}
		}
		if v {
			servers = append(servers, consensus.Server{ID: o.Name, Address: o.Raft.String(), Voter: true})
			if o.Name == self {
				selfVoter = true
			}
		}
	}
	return servers, selfVoter
}

func (n *Node) startCore(reg prometheus.Registerer) error {
	dep := n.cfg.Federation.Deployment
	site, ok := dep.Site(n.self.Region)
	if !ok {
		return fmt.Errorf("region: node %s: region %s has no site", n.self.Name, n.self.Region)
	}
	var prefixes []netip.Prefix
	var pools []session.Pool
	for _, p := range site.Pools {
		prefixes = append(prefixes, p.Prefix)
		pools = append(pools, session.Pool{APN: p.APN, Prefix: p.Prefix})
	}

	// The user plane first: sessions install into it.
	bcfg := breakout.Config{
		Name:         n.self.Name,
		Listen:       n.self.GTPU,
		Workers:      n.cfg.Breakout.Workers,
		NewEgress:    n.cfg.Breakout.NewEgress,
		TUNName:      tunName(n.self.Name),
		Pools:        prefixes,
		NATInterface: n.cfg.Breakout.NATInterface,
		NoNAT:        n.cfg.Breakout.NoNAT,
		Logger:       n.log.With("component", "breakout"),
		Registerer:   reg,
	}
	b, err := breakout.New(bcfg)
	if err != nil {
		return fmt.Errorf("region: %w", err)
	}
	n.user = b
	n.addCloser("breakout", b.Close)

	nodeID, err := nodeIndex(dep.Nodes, n.self.Name)
	if err != nil {
		return err
	}
	st, err := session.New(session.Config{
		NodeID:  nodeID,
		Node:    n.self.Name,
		Region:  n.self.Region,
		Pools:   pools,
		Tunnels: b,
		Anchors: n.store.Anchors(),
		Usage:   n.store,
		// Interim usage records (deltas) so that long sessions are billed
		// before they end, and a node crash loses at most this much.
		UsageInterval: 5 * time.Minute,
		Logger:        n.log.With("component", "session"),
		Registerer:    reg,
	})
	if err != nil {
		return fmt.Errorf("region: %w", err)
	}
	n.sessions = st
	n.addCloser("sessions", st.Close)

	ep, err := gtpc.New(gtpc.Config{
		Addrs:    []netip.AddrPort{n.self.GTPC},
		StateDir: filepath.Join(n.cfg.StateDir, "gtpc"),
		// The endpoint has already removed the peer's sessions through the
		// PGW's or GGSN's PeerRestarted (TS 23.007 §16.1.1 / §18) when this
		// runs; the node only reports it.
		OnPeerRestart: func(ev gtpc.PeerRestart) {
			n.log.Warn("GTP peer restarted; its sessions were removed", "version", ev.Version, "peer", ev.Peer,
				"old", ev.Old, "new", ev.New, "removed", ev.Removed)
		},
		Logger:     n.log.With("component", "gtpc"),
		Registerer: reg,
	})
	if err != nil {
		return fmt.Errorf("region: %w", err)
	}
	n.gtp = ep
	n.addCloser("gtpc", ep.Close)

	dns, err := parseAddrs(n.cfg.DNS)
	if err != nil {
		return err
	}
	p, err := pgw.New(pgw.Config{
		Endpoint:    ep,
		Sessions:    st,
		Subscribers: n.store,
		UserPlane:   n.self.GTPU.Addr(),
		DNS:         dns,
		Logger:      n.log.With("component", "pgw"),
		Registerer:  reg,
	})
	if err != nil {
		return fmt.Errorf("region: %w", err)
	}
	n.addCloser("pgw", p.Close)
	g, err := ggsn.New(ggsn.Config{
		Endpoint:    ep,
		Sessions:    st,
		Subscribers: n.store,
		UserPlane:   n.self.GTPU.Addr(),
		DNS:         dns,
		Logger:      n.log.With("component", "ggsn"),
		Registerer:  reg,
	})
	if err != nil {
		return fmt.Errorf("region: %w", err)
	}
	n.addCloser("ggsn", g.Close)
	n.pgw, n.ggsn = p, g

	// The HSS last: it is what sends devices here.
	realm := n.realm()
	pgws := map[topology.RegionID]hss.PGW{}
	for _, s := range dep.Sites {
		for _, o := range dep.Nodes {
			if o.Region == s.Region && o.Role == topology.RoleCore && o.GTPC.IsValid() {
				host := s.PGWHost
				if host == "" {
					host = "pgw." + strings.ToLower(string(s.Region)) + "." + realm
				}
				pgws[s.Region] = hss.PGW{Host: host, Addr: o.GTPC.Addr()}
				break
			}
		}
	}
	var rules []hss.PeerRule
	for _, d := range dep.Peers.Diameter {
		rules = append(rules, hss.PeerRule{Host: d.Host, Realm: d.Realm, Prefixes: dep.Peers.Prefixes})
	}
	if len(rules) == 0 {
		rules = append(rules, hss.PeerRule{Prefixes: dep.Peers.Prefixes})
	}
	n.steer = newCommittedSteerer(n.cons)
	journal := newServingJournal(n.store, n.log.With("component", "serving-journal"))
	n.addCloser("serving journal", journal.Close)
	h, err := hss.New(hss.Config{
		OriginHost:  "hss." + n.self.Name + "." + realm,
		OriginRealm: realm,
		Listen:      []netip.AddrPort{n.self.Diameter},
		Region:      n.self.Region,
		Peers:       rules,
		Subscribers: journal,
		Steering:    n.steer,
		PGWs:        pgws,
		Logger:      n.log.With("component", "hss"),
		Registerer:  reg,
	})
	if err != nil {
		return fmt.Errorf("region: %w", err)
	}
	n.hss = h
	n.addCloser("hss", h.Close)

	rh, err := newRehomer(n, reg)
	if err != nil {
		return err
	}
	n.rehomer = rh
	n.addCloser("rehoming", rh.Close)
	return nil
}

func (n *Node) realm() string {
	if r := n.cfg.Federation.Settings.Realm; r != "" {
		return r
	}
	return "rendezvous.lab"
}

func (n *Node) startAPI() error {
	if !n.self.API.IsValid() {
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	api, err := opapi.NewServer(opapi.ServerConfig{
		Listen:  n.self.API,
		Token:   n.cfg.APIToken,
		Backend: &backend{n: n},
		Extra: map[string]http.Handler{
			"GET /metrics":   promhttp.HandlerFor(n.metrics, promhttp.HandlerOpts{}),
			"/debug/pprof/":  mux,
			"/debug/pprof/*": mux,
		},
		Logger: n.log.With("component", "api"),
	})
	if err != nil {
		return fmt.Errorf("region: %w", err)
	}
	n.api = api
	n.addCloser("api", api.Close)
	return nil
}

// Close stops every component in reverse order of start and waits for their
// goroutines. It is idempotent and returns the joined errors.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		for i := len(n.closers) - 1; i >= 0; i-- {
			if err := n.closers[i](); err != nil {
				errs = append(errs, err)
			}
		}
		n.closeErr = errors.Join(errs...)
		n.log.Info("node stopped")
	})
	return n.closeErr
}

// Name returns the node's name.
func (n *Node) Name() string { return n.self.Name }

// Self returns the node's entry of the federation file.
func (n *Node) Self() topology.Node { return n.self }

// Consensus returns the node's raft member (for tests and drills).
func (n *Node) Consensus() *consensus.Node { return n.cons }

// Registry returns the node's registry store; nil on a witness.
func (n *Node) Registry() *registry.Store { return n.store }

// Sessions returns the number of sessions (PDN connections and PDP
// contexts) this node serves.
func (n *Node) Sessions() int {
	if n.sessions == nil {
		return 0
	}
	return n.sessions.Len()
}

// APIAddr returns the operator API's address.
func (n *Node) APIAddr() netip.AddrPort {
	if n.api == nil {
		return netip.AddrPort{}
	}
	return n.api.Addr()
}

// BreakoutStats returns the user plane's counters; zero on a witness.
func (n *Node) BreakoutStats() breakout.Stats {
	if n.user == nil {
		return breakout.Stats{}
	}
	return n.user.Stats()
}

func tunName(node string) string {
	name := "rdv-" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '-'
	}, node)
	if len(name) > 15 { // IFNAMSIZ - 1
		name = name[:15]
	}
	return name
}

// nodeIndex is the node's id in the high bits of its TEIDs: its position in
// the federation file (stable as long as nodes are appended).
func nodeIndex(nodes []topology.Node, name string) (uint8, error) {
	for i, o := range nodes {
		if o.Name == name {
			if i > 255 {
				return 0, fmt.Errorf("region: node %s is number %d; at most 256 nodes carry a TEID prefix", name, i)
			}
			return uint8(i), nil
		}
	}
	return 0, fmt.Errorf("region: node %s not in the federation", name)
}

func parseAddrs(ss []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range ss {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("region: DNS server %q: %w", s, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// Rehoming returns the progress of this node's re-homing.
func (n *Node) Rehoming() opapi.Rehoming {
	if n.rehomer == nil {
		return opapi.Rehoming{}
	}
	return n.rehomer.Progress()
}

// Member returns another node as this node's gossip sees it.
func (n *Node) Member(name string) (membership.Member, bool) {
	return n.members.Member(name)
}
