package netns

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/config"
	"github.com/rendezvous-core/rendezvous/federation/consensus"
	"github.com/rendezvous-core/rendezvous/federation/membership"
	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/lab"
	"github.com/rendezvous-core/rendezvous/region/opapi"
	"github.com/rendezvous-core/rendezvous/topology"
)

// ChildCommand is the name of the hidden rendezvous subcommand that runs a
// child (cmd/rendezvous lab-child SPEC): the default Config.Command.
const ChildCommand = "lab-child"

// Config configures a namespace lab. Zero values take the defaults named.
type Config struct {
	// StateDir holds the federation file, keys, specs, each node's state
	// and every child's log (logs/NAME.log). Required.
	StateDir string
	// Command is the argv prefix that runs a child; the path of its JSON
	// Spec is appended as the last argument and the program must call
	// RunChild with it. Default: this executable with ChildCommand.
	Command []string
	// SubscribersFile is a CSV to provision; "" → Subscribers generated.
	SubscribersFile string
	// Subscribers to generate without a file. Default 200.
	Subscribers int
	// APIToken of every node's operator API; "" → random.
	APIToken string
	// GossipProfile, RaftTiming and Policy tune every node (tests shorten
	// them); zero → the production presets, except Policy.RTTInterval,
	// which defaults to -1 (no RTT commits: on veths every RTT is ~0.1 ms
	// and steering would follow noise; the lab steers by the static
	// estimates, like the in-process lab).
	GossipProfile membership.Profile
	RaftTiming    consensus.Timing
	Policy        consensus.PolicyConfig
	// RehomeRate is each node's re-homing rate (devices/s). Default 20.
	RehomeRate float64
	// Version is gossiped and shown in status.
	Version string
	// LogLevel of the children's logs. Default "info".
	LogLevel string
	// PostgresBin is the directory with initdb and postgres. Default the
	// newest /usr/lib/postgresql/*/bin.
	PostgresBin string
	// Logger receives the cluster's own progress; nil discards.
	Logger *slog.Logger
}

// Cluster is a running namespace lab.
type Cluster struct {
	cfg      Config
	fed      *config.Federation
	fedFile  string
	kekFile  string
	tokFile  string
	token    string
	subsFile string
	log      *slog.Logger
	pg       *postgres
	http     *http.Client

	mu    sync.Mutex // guards following fields
	procs map[string]*proc

	closeOnce sync.Once
	closeErr  error
}

// proc is one child process.
type proc struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{}
	started time.Time
}

// Start builds the namespaces, starts PostgreSQL, provisions the
// subscribers and starts every node process. It returns once every node's
// API answers (not yet once a raft leader is elected: see WaitLeader). On
// error, everything created is removed.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("netns: the namespace lab needs root (network namespaces, veths, nftables, TUN devices)")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("netns: StateDir is required")
	}
	if cfg.Subscribers == 0 {
		cfg.Subscribers = 200
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Policy.RTTInterval == 0 {
		cfg.Policy.RTTInterval = -1
	}
	if len(cfg.Command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("netns: own executable: %w", err)
		}
		cfg.Command = []string{exe, ChildCommand}
	}
	pgBin, err := findPostgresBin(cfg.PostgresBin)
	if err != nil {
		return nil, err
	}
	// One namespace lab per machine: the names and the subnet are fixed.
	if err := claimOwner(); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger, procs: map[string]*proc{},
		http: &http.Client{Timeout: 30 * time.Second}}
	defer func() {
		if err != nil {
			if cerr := c.Close(); cerr != nil {
				c.log.Warn("cleanup after failed start", "err", cerr)
			}
		}
	}()
	for _, d := range []string{cfg.StateDir, c.path("logs"), c.path("specs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("netns: %w", err)
		}
	}
	// A lab that was killed leaves its namespaces (and maybe processes).
	killLeftovers(ctx, c.log)
	if err := removeAll(ctx); err != nil {
		return nil, fmt.Errorf("netns: remove a previous lab's namespaces: %w", err)
	}
	c.log.Info("building namespaces", "subnet", subnet)
	if err := buildFabric(ctx); err != nil {
		return nil, err
	}
	c.log.Info("starting PostgreSQL", "ns", registryMember.ns(), "bin", pgBin)
	if c.pg, err = startPostgres(ctx, pgBin, c.path("logs", "postgres.log")); err != nil {
		return nil, err
	}
	if err := c.writeFiles(); err != nil {
		return nil, err
	}
	if c.fed, err = config.Load(c.fedFile); err != nil {
		return nil, fmt.Errorf("netns: generated federation file: %w", err)
	}
	if err := c.provision(ctx); err != nil {
		return nil, err
	}
	for _, m := range nodeMembers {
		if err := c.startNode(m); err != nil {
			return nil, err
		}
	}
	for _, m := range nodeMembers {
		if err := c.waitAPI(ctx, m.name, 60*time.Second); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Cluster) path(elem ...string) string {
	return filepath.Join(append([]string{c.cfg.StateDir}, elem...)...)
}

func (c *Cluster) writeFiles() error {
	c.token = c.cfg.APIToken
	if c.token == "" {
		c.token = randomHex(16)
	}
	c.fedFile, c.kekFile, c.tokFile = c.path("federation.yaml"), c.path("kek"), c.path("api-token")
	files := []struct {
		path, data string
	}{
		{c.fedFile, federationYAML()},
		{c.kekFile, "lab " + randomHex(32) + "\n"},
		{c.tokFile, c.token + "\n"},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, []byte(f.data), 0o600); err != nil {
			return fmt.Errorf("netns: %w", err)
		}
	}
	c.subsFile = c.cfg.SubscribersFile
	if c.subsFile == "" {
		c.subsFile = c.path("subscribers.csv")
		if err := lab.GenerateSubscribers(c.subsFile, c.cfg.Subscribers); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) provision(ctx context.Context) error {
	f, err := os.Open(c.subsFile)
	if err != nil {
		return fmt.Errorf("netns: subscribers: %w", err)
	}
	defer f.Close()
	store, err := registry.Open(ctx, registry.Config{DSN: c.pg.dsn, KEKFile: c.kekFile, Region: topology.JP,
		Logger: c.log.With("component", "provisioning")})
	if err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	rep, err := store.Import(ctx, bufio.NewReader(f), registry.ImportCSV)
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("netns: import %s: %w", c.subsFile, err)
	}
	c.log.Info("subscribers provisioned", "file", c.subsFile, "rows", rep.Rows, "imported", rep.Imported, "failed", rep.Failed)
	if rep.Imported == 0 {
		return fmt.Errorf("netns: %s: no subscriber could be imported (%d rows, %d failed)", c.subsFile, rep.Rows, rep.Failed)
	}
	return nil
}

func (c *Cluster) startNode(m member) error {
	n, err := c.fed.Node(m.name)
	if err != nil {
		return err
	}
	ns := &NodeSpec{
		Config: c.fedFile, Name: m.name, StateDir: c.path("nodes", m.name), APITokenFile: c.tokFile,
		NATInterface: innerLink, GossipProfile: c.cfg.GossipProfile, RaftTiming: c.cfg.RaftTiming,
		Policy: c.cfg.Policy, RehomeRate: c.cfg.RehomeRate, Version: c.cfg.Version,
	}
	if n.Role == topology.RoleCore {
		ns.RegistryDSN, ns.KEKFile = c.pg.dsn, c.kekFile
	}
	return c.startChild(m, Spec{Node: ns, LogLevel: c.cfg.LogLevel})
}

func (c *Cluster) startChild(m member, s Spec) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.procs[m.name]; ok && !p.exited() {
		return fmt.Errorf("netns: %s is already running (pid %d)", m.name, p.cmd.Process.Pid)
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("netns: spec of %s: %w", m.name, err)
	}
	specFile := c.path("specs", m.name+".json")
	if err := os.WriteFile(specFile, data, 0o600); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	lf, err := os.OpenFile(c.path("logs", m.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	defer lf.Close() // the child has its own descriptor
	argv := append(append([]string(nil), c.cfg.Command...), specFile)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Dir = c.cfg.StateDir
	// Own process group: a terminal's SIGINT reaches the lab only, which
	// then stops its children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := startIn(m.ns(), cmd); err != nil {
		return err
	}
	p := &proc{name: m.name, cmd: cmd, done: make(chan struct{}), started: time.Now()}
	go func() {
		defer close(p.done)
		_ = cmd.Wait()
	}()
	c.procs[m.name] = p
	c.log.Info("started", "child", m.name, "ns", m.ns(), "pid", cmd.Process.Pid)
	return nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitAPI waits until a node's operator API answers.
func (c *Cluster) waitAPI(ctx context.Context, name string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	cl := c.API(name)
	for {
		sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cl.Status(sctx)
		scancel()
		if err == nil {
			return nil
		}
		c.mu.Lock()
		p := c.procs[name]
		c.mu.Unlock()
		if p != nil && p.exited() {
			return fmt.Errorf("netns: node %s exited at start: %s (log %s)", name, p.cmd.ProcessState, c.path("logs", name+".log"))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("netns: node %s API: %w (last: %v; log %s)", name, ctx.Err(), err, c.path("logs", name+".log"))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// API returns an operator API client for a node.
func (c *Cluster) API(node string) *opapi.Client {
	m, _ := nodeMember(node)
	return &opapi.Client{Base: "http://" + m.addr.String() + ":8080", Token: c.token, HTTP: c.http}
}

// Nodes returns the node names in the federation file's order.
func (c *Cluster) Nodes() []string {
	out := make([]string, len(nodeMembers))
	for i, m := range nodeMembers {
		out[i] = m.name
	}
	return out
}

// Running says whether a node's process is running.
func (c *Cluster) Running(node string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.procs[node]
	return ok && !p.exited()
}

// PID returns a running node's process id (0 when not running).
func (c *Cluster) PID(node string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.procs[node]; ok && !p.exited() {
		return p.cmd.Process.Pid
	}
	return 0
}

// Federation returns the parsed federation file of the namespace lab.
func (c *Cluster) Federation() *config.Federation { return c.fed }

// FederationFile returns the path of the generated federation file.
func (c *Cluster) FederationFile() string { return c.fedFile }

// Token returns the operator API token.
func (c *Cluster) Token() string { return c.token }

// SubscribersFile returns the CSV the lab provisioned.
func (c *Cluster) SubscribersFile() string { return c.subsFile }

// RegistryDSN returns the private PostgreSQL's DSN (reachable from the
// host namespace and every namespace of the lab).
func (c *Cluster) RegistryDSN() string { return c.pg.dsn }

// Kill sends SIGKILL to a node's process and waits until it is gone.
func (c *Cluster) Kill(node string) error {
	c.mu.Lock()
	p, ok := c.procs[node]
	c.mu.Unlock()
	if !ok || p.exited() {
		return fmt.Errorf("netns: node %s is not running", node)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("netns: kill -9 %s (pid %d): %w", node, p.cmd.Process.Pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("netns: %s (pid %d) still there 10s after SIGKILL", node, p.cmd.Process.Pid)
	}
}

// Restart starts a node's process again (after Kill), with its state dir.
func (c *Cluster) Restart(ctx context.Context, node string) error {
	m, ok := nodeMember(node)
	if !ok {
		return fmt.Errorf("netns: no node %q", node)
	}
	if err := c.startNode(m); err != nil {
		return err
	}
	return c.waitAPI(ctx, node, 60*time.Second)
}

// Partition cuts a node's namespace off from every other node (gossip,
// raft, everything): an nftables table inside that namespace drops its
// traffic to and from the other nodes' addresses. The visited network, the
// internet and the registry still reach it: the region is cut off from the
// federation, not from its devices.
func (c *Cluster) Partition(ctx context.Context, node string) error {
	m, ok := nodeMember(node)
	if !ok {
		return fmt.Errorf("netns: no node %q", node)
	}
	return run(ctx, partitionRules(m), "ip", "netns", "exec", m.ns(), "nft", "-f", "-")
}

// Heal removes a node's partition.
func (c *Cluster) Heal(ctx context.Context, node string) error {
	m, ok := nodeMember(node)
	if !ok {
		return fmt.Errorf("netns: no node %q", node)
	}
	return ip(ctx, "netns", "exec", m.ns(), "nft", "delete", "table", "inet", partitionTable)
}

// Pause stops a node's process with SIGSTOP (a hung node: its sockets stay
// open, nothing answers); Resume continues it with SIGCONT.
func (c *Cluster) Pause(node string) error { return c.signal(node, syscall.SIGSTOP) }

// Resume continues a paused node.
func (c *Cluster) Resume(node string) error { return c.signal(node, syscall.SIGCONT) }

func (c *Cluster) signal(node string, sig syscall.Signal) error {
	c.mu.Lock()
	p, ok := c.procs[node]
	c.mu.Unlock()
	if !ok || p.exited() {
		return fmt.Errorf("netns: node %s is not running", node)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("netns: %v to %s (pid %d): %w", sig, node, p.cmd.Process.Pid, err)
	}
	return nil
}

// RegistryDown makes PostgreSQL unreachable: an nftables table in the
// registry namespace drops everything to and from its port. RegistryUp
// removes it.
func (c *Cluster) RegistryDown(ctx context.Context) error {
	rules := fmt.Sprintf(`table inet %s {
	chain in { type filter hook input priority -10; policy accept; tcp dport %d drop; }
	chain out { type filter hook output priority -10; policy accept; tcp sport %d drop; }
}
`, partitionTable, pgPort, pgPort)
	return run(ctx, rules, "ip", "netns", "exec", registryMember.ns(), "nft", "-f", "-")
}

// RegistryUp ends RegistryDown.
func (c *Cluster) RegistryUp(ctx context.Context) error {
	return ip(ctx, "netns", "exec", registryMember.ns(), "nft", "delete", "table", "inet", partitionTable)
}

// WaitLeader waits until every running node's API names the same raft
// leader, and returns it.
func (c *Cluster) WaitLeader(ctx context.Context) (string, error) {
	for {
		leader, agree := "", true
		for _, n := range c.Nodes() {
			if !c.Running(n) {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := c.API(n).Status(sctx)
			cancel()
			if err != nil || st.Leader == "" || (leader != "" && st.Leader != leader) {
				agree = false
				break
			}
			leader = st.Leader
		}
		if agree && leader != "" {
			return leader, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("netns: no agreed raft leader: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Close stops the visited network and every node (SIGTERM, SIGKILL after
// 10 s), stops PostgreSQL and removes every namespace. Idempotent.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		c.mu.Lock()
		procs := make([]*proc, 0, len(c.procs))
		for _, p := range c.procs {
			procs = append(procs, p)
		}
		c.mu.Unlock()
		for _, p := range procs {
			if !p.exited() {
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for _, p := range procs {
			select {
			case <-p.done:
			case <-time.After(time.Until(deadline)):
				errs = append(errs, fmt.Errorf("netns: %s (pid %d) ignored SIGTERM; killed", p.name, p.cmd.Process.Pid))
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if c.pg != nil {
			errs = append(errs, c.pg.close())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		errs = append(errs, removeAll(ctx), releaseOwner())
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// ErrBusy is returned by Start when another process runs a namespace lab:
// the namespace names and the subnet are fixed, so there is one per machine.
var ErrBusy = errors.New("netns: another namespace lab is running")

// ownerFile holds the PID of the process running the namespace lab.
const ownerFile = "/run/rdvns-lab.pid"

// claimOwner records this process as the namespace lab's owner, or fails
// when another live process owns it (its namespaces must not be touched).
func claimOwner() error {
	if data, err := os.ReadFile(ownerFile); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		if pid > 0 && pid != os.Getpid() && syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("%w (pid %d, %s): stop it first", ErrBusy, pid, ownerFile)
		}
	}
	if err := os.WriteFile(ownerFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	return nil
}

// releaseOwner removes the owner file if it names this process.
func releaseOwner() error {
	data, err := os.ReadFile(ownerFile)
	if err != nil || strings.TrimSpace(string(data)) != strconv.Itoa(os.Getpid()) {
		return nil
	}
	if err := os.Remove(ownerFile); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	return nil
}

// killLeftovers kills the processes still running in a previous lab's
// namespaces (a lab killed before its Close; claimOwner has checked that
// its owner is gone), by PID.
func killLeftovers(ctx context.Context, log *slog.Logger) {
	names, _ := listNamespaces()
	for _, n := range names {
		out, err := exec.CommandContext(ctx, "ip", "netns", "pids", n).Output()
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				log.Warn("killing a previous lab's process", "ns", n, "pid", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}
