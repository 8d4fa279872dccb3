package consensus_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/consensus"
	"github.com/rendezvous-core/rendezvous/federation/membership"
	"github.com/rendezvous-core/rendezvous/federation/membership/faultnet"
	"github.com/rendezvous-core/rendezvous/federation/steering"
	"github.com/rendezvous-core/rendezvous/topology"
)

// The real-socket harness: five nodes (one per region + the witness), each
// with memberlist on UDP/TCP and raft on TCP on its own 127.0.40.x
// address, faults injected by faultnet wrapping both transports.

const (
	gossipPort = 7946
	raftPort   = 7947
)

var regions = []topology.RegionID{topology.JP, topology.US, topology.DE, topology.AU}

type spec struct {
	name   string
	region topology.RegionID
}

var five = []spec{{"jp1", topology.JP}, {"us1", topology.US}, {"de1", topology.DE}, {"au1", topology.AU}, {"wit", ""}}

type preset struct {
	profile membership.Profile
	timing  consensus.Timing
	policy  consensus.PolicyConfig
	// wan emulates the notes' WAN RTTs between the nodes (wanRTT).
	wan bool
}

// wanRTT is the RTT matrix of notes/federation.md's measurements (ms);
// the witness sits at SG.
var wanRTT = map[[2]string]time.Duration{
	{"JP", "US"}: 120, {"JP", "DE"}: 230, {"JP", "AU"}: 120, {"US", "DE"}: 100, {"US", "AU"}: 190, {"DE", "AU"}: 290,
	{"SG", "JP"}: 70, {"SG", "AU"}: 95, {"SG", "DE"}: 160, {"SG", "US"}: 190,
}

// fastPreset scales the production shape down for loopback tests.
func fastPreset() preset {
	return preset{
		profile: membership.TestProfile(),
		timing:  consensus.TestTiming(),
		policy: consensus.PolicyConfig{
			ConfirmWindow: time.Second,
			HealthyWindow: 3 * time.Second,
			StartupGrace:  2 * time.Second,
			RetryAfter:    2 * time.Second,
			RTTInterval:   5 * time.Second,
		},
	}
}

// productionPreset is the production configuration, unchanged.
func productionPreset() preset {
	return preset{profile: membership.WANProfile(), timing: consensus.WANTiming(), policy: consensus.ProductionPolicy(regions)}
}

type fnode struct {
	spec
	ip   netip.Addr
	dir  string
	mem  *membership.Membership
	cons *consensus.Node
	dead bool
}

type fed struct {
	t     *testing.T
	net   *faultnet.Network
	p     preset
	nodes []*fnode
	seeds []string
	srv   []consensus.Server
}

func logger(t testing.TB) *slog.Logger {
	if os.Getenv("RDV_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newFed(t *testing.T, base int, p preset) *fed {
	f := &fed{t: t, net: faultnet.New(uint64(base)), p: p}
	for i, s := range five {
		ip := netip.AddrFrom4([4]byte{127, 0, 40, byte(base + i)})
		f.nodes = append(f.nodes, &fnode{spec: s, ip: ip, dir: t.TempDir()})
		f.seeds = append(f.seeds, netip.AddrPortFrom(ip, gossipPort).String())
		f.srv = append(f.srv, consensus.Server{ID: s.name, Address: netip.AddrPortFrom(ip, raftPort).String(), Voter: true})
	}
	if p.wan {
		site := map[netip.Addr]string{}
		for _, n := range f.nodes {
			site[n.ip] = string(n.region)
			if n.region == "" {
				site[n.ip] = "SG"
			}
		}
		f.net.SetRTT(func(a, b netip.Addr) time.Duration {
			x, y := site[a], site[b]
			if d, ok := wanRTT[[2]string{x, y}]; ok {
				return d * time.Millisecond
			}
			return wanRTT[[2]string{y, x}] * time.Millisecond
		})
	}
	for i := range f.nodes {
		f.start(i)
	}
	t.Cleanup(func() {
		for i := range f.nodes {
			f.kill(i)
		}
		checkNoLeaks(t, "federation/membership.(*Membership)", "federation/consensus.(*Node)")
	})
	return f
}

func (f *fed) start(i int) {
	f.t.Helper()
	n := f.nodes[i]
	log := logger(f.t).With("node", n.name)
	role := membership.RoleCore
	if n.region == "" {
		role = membership.RoleWitness
	}
	var err error
	n.mem, err = membership.New(membership.Config{
		Name: n.name, Region: n.region, Role: role, Version: "test",
		Addrs:    map[string]string{"raft": f.srv[i].Address},
		BindAddr: n.ip.String(), BindPort: gossipPort, Seeds: f.seeds,
		SecretKey: []byte("0123456789abcdef"), Label: "rv-fed-test",
		Profile: f.p.profile, WrapTransport: f.net.Memberlist(n.ip), Logger: log,
	})
	if err != nil {
		f.t.Fatalf("membership %s: %v", n.name, err)
	}
	sl, err := f.net.Listen(n.ip, raftPort)
	if err != nil {
		f.t.Fatalf("listen %s: %v", n.name, err)
	}
	n.cons, err = consensus.New(consensus.Config{
		ID: n.name, Regions: regions, StreamLayer: sl, DataDir: n.dir,
		Servers: f.srv, Bootstrap: true, Timing: f.p.timing, Policy: f.p.policy,
		View: n.mem, Logger: log,
	})
	if err != nil {
		n.mem.Close()
		f.t.Fatalf("consensus %s: %v", n.name, err)
	}
	n.dead = false
}

// kill crashes node i: no graceful leave, sockets closed.
func (f *fed) kill(i int) {
	n := f.nodes[i]
	if n.dead || n.cons == nil {
		return
	}
	n.dead = true
	if err := n.mem.Close(); err != nil {
		f.t.Logf("close membership %s: %v", n.name, err)
	}
	if err := n.cons.Close(); err != nil {
		f.t.Logf("close consensus %s: %v", n.name, err)
	}
}

func (f *fed) live() []*fnode {
	var out []*fnode
	for _, n := range f.nodes {
		if !n.dead {
			out = append(out, n)
		}
	}
	return out
}

func (f *fed) index(name string) int {
	for i, n := range f.nodes {
		if n.name == name {
			return i
		}
	}
	f.t.Fatalf("no node %s", name)
	return -1
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leader waits until one of nodes leads (Barrier passed) and every one of
// nodes names it, and returns its index in f.nodes.
func (f *fed) leader(nodes []*fnode) int {
	f.t.Helper()
	idx := -1
	waitFor(f.t, "an agreed leader", 60*time.Second, func() bool {
		idx = -1
		for i, n := range f.nodes {
			if !n.dead && n.cons.IsLeader() && contains(nodes, n) {
				idx = i
			}
		}
		if idx < 0 {
			return false
		}
		for _, n := range nodes {
			if id, _ := n.cons.Leader(); id != f.nodes[idx].name {
				return false
			}
		}
		return true
	})
	return idx
}

// onLeader runs an operator command on the current leader, retrying
// (as an operator or rdvctl would) when the leadership moved under it: on
// a loaded 2-core CI box a spurious election is possible.
func (f *fed) onLeader(op func(*fnode) error) {
	f.t.Helper()
	var err error
	for try := 0; try < 5; try++ {
		l := f.leader(f.live())
		if err = op(f.nodes[l]); err == nil {
			return
		}
		f.t.Logf("operator command on %s: %v (retrying)", f.nodes[l].name, err)
	}
	f.t.Fatalf("operator command failed: %v", err)
}

func contains(ns []*fnode, n *fnode) bool {
	for _, x := range ns {
		if x == n {
			return true
		}
	}
	return false
}

// converged reports whether every node in nodes applied the same table
// (same regions, epochs, failover orders) and it satisfies cond.
func converged(nodes []*fnode, cond func(consensus.Table) bool) bool {
	first := nodes[0].cons.Table()
	if !cond(first) {
		return false
	}
	for _, n := range nodes[1:] {
		t := n.cons.Table()
		if t.Index != first.Index || !reflect.DeepEqual(t.Regions, first.Regions) {
			return false
		}
	}
	return true
}

func state(r topology.RegionID, s steering.State) func(consensus.Table) bool {
	return func(t consensus.Table) bool { return t.Regions[r].State == s }
}

// allActive waits until the five nodes see each other and a leader.
func (f *fed) settle() int {
	f.t.Helper()
	waitFor(f.t, "5 members everywhere", 60*time.Second, func() bool {
		for _, n := range f.live() {
			if n.mem.NumMembers() != len(f.live()) {
				return false
			}
		}
		return true
	})
	return f.leader(f.live())
}

// ensureRegionLeader makes a region node (not the witness) the leader.
func (f *fed) ensureRegionLeader() int {
	f.t.Helper()
	l := f.settle()
	for f.nodes[l].region == "" {
		to := f.nodes[0]
		if err := f.nodes[l].cons.TransferLeadership(to.name, f.srv[0].Address); err != nil {
			f.t.Logf("transfer leadership: %v", err)
		}
		l = f.leader(f.live())
	}
	return l
}

func TestKillRegionLeaderCommitsFailureEverywhere(t *testing.T) {
	f := newFed(t, 40, fastPreset())
	l := f.settle()
	// Kill a region node that is not the leader.
	victim := -1
	for i, n := range f.nodes {
		if i != l && n.region != "" {
			victim = i
			break
		}
	}
	region := f.nodes[victim].region
	killed := time.Now()
	f.kill(victim)
	waitFor(t, fmt.Sprintf("every survivor applied %s failed", region), 60*time.Second, func() bool {
		return converged(f.live(), state(region, steering.StateFailed))
	})
	row := f.nodes[l].cons.Table().Regions[region]
	t.Logf("%s: death → applied everywhere in %s; row %+v", region, time.Since(killed), row)
	if row.Origin != consensus.OriginPolicy || row.Epoch != 1 || len(row.FailoverTo) != 3 {
		t.Fatalf("unexpected row %+v", row)
	}
	for _, r := range regions {
		if r != region && f.nodes[l].cons.Table().Regions[r].State != steering.StateActive {
			t.Fatalf("%s changed: %+v", r, f.nodes[l].cons.Table().Regions[r])
		}
	}
}

func TestKillLeadersRegionNewLeaderDecides(t *testing.T) {
	f := newFed(t, 50, fastPreset())
	l := f.ensureRegionLeader()
	region := f.nodes[l].region
	f.kill(l)
	nl := f.leader(f.live())
	if nl == l {
		t.Fatal("dead leader still leads")
	}
	waitFor(t, fmt.Sprintf("new leader %s fails %s everywhere", f.nodes[nl].name, region), 60*time.Second, func() bool {
		return converged(f.live(), state(region, steering.StateFailed))
	})
	// Operator commands go to the leader; followers name it.
	var follower *fnode
	for _, n := range f.live() {
		if n != f.nodes[nl] {
			follower = n
			break
		}
	}
	_, err := follower.cons.Restore(t.Context(), region, "")
	var nle *consensus.NotLeaderError
	if !asNotLeader(err, &nle) || nle.LeaderID != f.nodes[nl].name {
		t.Fatalf("follower Restore: %v", err)
	}
}

func asNotLeader(err error, target **consensus.NotLeaderError) bool {
	e, ok := err.(*consensus.NotLeaderError)
	if ok {
		*target = e
	}
	return ok
}

func TestPartitionedRegionDecidesNothingThenHealsAndRestores(t *testing.T) {
	f := newFed(t, 60, fastPreset())
	l := f.settle()
	au := f.index("au1")
	if l == au {
		if err := f.nodes[l].cons.TransferLeadership("wit", f.srv[4].Address); err != nil {
			t.Fatal(err)
		}
		l = f.leader(f.live())
	}
	before := f.nodes[au].cons.Table()
	f.net.Partition([]netip.Addr{f.nodes[au].ip})
	majority := []*fnode{}
	for _, n := range f.live() {
		if n.name != "au1" {
			majority = append(majority, n)
		}
	}
	waitFor(t, "majority fails AU", 60*time.Second, func() bool {
		return converged(majority, state(topology.AU, steering.StateFailed))
	})
	// The isolated node sees every other region dead, yet it has no leader
	// and cannot commit: its table is unchanged.
	waitFor(t, "au1 sees the others dead", 60*time.Second, func() bool {
		m, _ := f.nodes[au].mem.Member("jp1")
		return m.State == membership.StateDead
	})
	time.Sleep(3 * time.Second) // a negative: the window in which it could have decided
	after := f.nodes[au].cons.Table()
	if !reflect.DeepEqual(before.Regions, after.Regions) {
		t.Fatalf("isolated au1 changed its table:\nbefore %+v\nafter  %+v", before.Regions, after.Regions)
	}
	if f.nodes[au].cons.IsLeader() {
		t.Fatal("isolated au1 leads")
	}
	if _, err := f.nodes[au].cons.Failover(t.Context(), topology.JP, "minority"); err == nil {
		t.Fatal("isolated au1 accepted an operator failover")
	}
	// Heal: gossip re-merges (re-join loop), AU is alive again for the
	// healthy window, and the policy restores it; au1 catches up.
	f.net.Heal()
	waitFor(t, "AU restored by policy everywhere, au1 included", 90*time.Second, func() bool {
		return converged(f.live(), func(t consensus.Table) bool {
			r := t.Regions[topology.AU]
			return r.State == steering.StateActive && r.Epoch == 2 && r.Origin == consensus.OriginPolicy
		})
	})
}

func TestRecoverTwoSurvivorsIntoNewCluster(t *testing.T) {
	f := newFed(t, 70, fastPreset())
	f.settle()
	f.onLeader(func(n *fnode) error {
		if n.cons.Table().Regions[topology.DE].State == steering.StateDraining {
			return nil // an ambiguous earlier attempt committed
		}
		_, err := n.cons.Drain(t.Context(), topology.DE, "before the disaster")
		return err
	})
	waitFor(t, "drain applied everywhere", 30*time.Second, func() bool {
		return converged(f.live(), state(topology.DE, steering.StateDraining))
	})
	// Lose three of five voters: no quorum, nothing can be decided.
	for _, name := range []string{"jp1", "us1", "de1"} {
		f.kill(f.index(name))
	}
	au, wit := f.index("au1"), f.index("wit")
	waitFor(t, "survivors lose the leader", 30*time.Second, func() bool {
		a, _ := f.nodes[au].cons.Leader()
		w, _ := f.nodes[wit].cons.Leader()
		return a == "" && w == ""
	})
	f.kill(au)
	f.kill(wit)
	// The operator's decision: au1 + wit are the new cluster.
	survivors := []consensus.Server{f.srv[au], f.srv[wit]}
	for _, i := range []int{au, wit} {
		peers := f.nodes[i].dir + "/peers.json"
		if err := consensus.WritePeersFile(peers, survivors); err != nil {
			t.Fatal(err)
		}
		if err := consensus.Recover(consensus.RecoverConfig{ID: f.nodes[i].name, DataDir: f.nodes[i].dir, PeersFile: peers, Regions: regions, Logger: logger(t)}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(peers + ".applied"); err != nil {
			t.Fatalf("peers file not retired: %v", err)
		}
	}
	f.start(au)
	f.start(wit)
	f.leader([]*fnode{f.nodes[au], f.nodes[wit]})
	// The table survived (DE still draining at epoch 1), and the new
	// cluster decides: the dead regions JP and US are failed; AU stays.
	waitFor(t, "recovered cluster fails the dead regions", 60*time.Second, func() bool {
		return converged([]*fnode{f.nodes[au], f.nodes[wit]}, func(t consensus.Table) bool {
			return t.Regions[topology.JP].State == steering.StateFailed && t.Regions[topology.US].State == steering.StateFailed &&
				t.Regions[topology.DE].State == steering.StateDraining && t.Regions[topology.DE].Epoch == 1 &&
				t.Regions[topology.AU].State == steering.StateActive
		})
	})
	st := f.nodes[au].cons.Stats()
	if len(st.Servers) != 2 {
		t.Fatalf("configuration after recovery: %+v", st.Servers)
	}
}

// checkNoLeaks waits (generous deadline) until no goroutine stack mentions
// any of frames. memberlist's own goroutines are not joinable (its
// Shutdown does not wait for them, notes/style.md §2), so only ours are
// checked.
func checkNoLeaks(t testing.TB, frames ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		buf := make([]byte, 1<<22)
		stacks := string(buf[:runtime.Stack(buf, true)])
		leaked := ""
		for _, f := range frames {
			if strings.Contains(stacks, f) {
				leaked = f
			}
		}
		if leaked == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutine leak: %s still running after Close", leaked)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
