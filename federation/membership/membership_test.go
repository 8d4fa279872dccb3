package membership_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/membership"
	"github.com/rendezvous-core/rendezvous/federation/membership/faultnet"
	"github.com/rendezvous-core/rendezvous/federation/steering"
	"github.com/rendezvous-core/rendezvous/topology"
)

const gossipPort = 7946

var key = []byte("0123456789abcdef0123456789abcdef")

type spec struct {
	name   string
	region topology.RegionID
	role   membership.Role
}

var five = []spec{
	{"jp1", topology.JP, membership.RoleCore},
	{"us1", topology.US, membership.RoleCore},
	{"de1", topology.DE, membership.RoleCore},
	{"au1", topology.AU, membership.RoleCore},
	{"wit", "", membership.RoleWitness},
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("RDV_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type cluster struct {
	t     *testing.T
	net   *faultnet.Network
	ips   []netip.Addr
	seeds []string
	nodes []*membership.Membership
	mu    sync.Mutex
	invs  map[string][]membership.Invalidation
}

// ip returns the address of node i of the cluster at base: one 127.0.40.x
// per node, so that faultnet can tell nodes apart.
func ip(base, i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 40, byte(base + i)}) }

func newCluster(t *testing.T, base int, specs []spec) *cluster {
	c := &cluster{t: t, net: faultnet.New(uint64(base)), invs: map[string][]membership.Invalidation{}}
	for i := range specs {
		c.ips = append(c.ips, ip(base, i))
		c.seeds = append(c.seeds, netip.AddrPortFrom(ip(base, i), gossipPort).String())
	}
	c.nodes = make([]*membership.Membership, len(specs))
	for i, s := range specs {
		c.start(i, s, key, "rv-fed-test")
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if n != nil {
				n.Close()
				n.Close() // idempotent
			}
		}
		checkNoLeaks(t, "federation/membership.(*Membership)")
	})
	return c
}

func (c *cluster) start(i int, s spec, secret []byte, label string) {
	c.t.Helper()
	m, err := membership.New(membership.Config{
		Name: s.name, Region: s.region, Role: s.role, Version: "test",
		Addrs:    map[string]string{"raft": fmt.Sprintf("%s:7947", c.ips[i]), "api": fmt.Sprintf("%s:8080", c.ips[i])},
		BindAddr: c.ips[i].String(), BindPort: gossipPort,
		Seeds: c.seeds, SecretKey: secret, Label: label,
		Profile:       membership.TestProfile(),
		WrapTransport: c.net.Memberlist(c.ips[i]),
		OnInvalidation: func(inv membership.Invalidation) {
			c.mu.Lock()
			c.invs[s.name] = append(c.invs[s.name], inv)
			c.mu.Unlock()
		},
		Logger: testLogger(c.t).With("node", s.name),
	})
	if err != nil {
		c.t.Fatalf("start %s: %v", s.name, err)
	}
	c.nodes[i] = m
}

// waitFor polls cond until it holds or the generous deadline passes; tests
// never assert on wall time.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func stateOf(m *membership.Membership, name string) membership.State {
	mem, ok := m.Member(name)
	if !ok {
		return 0
	}
	return mem.State
}

func (c *cluster) allSee(name string, want membership.State, except ...int) func() bool {
	return func() bool {
		for i, n := range c.nodes {
			if n == nil || contains(except, i) {
				continue
			}
			if stateOf(n, name) != want {
				return false
			}
		}
		return true
	}
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

func TestFiveNodesJoinMetaRTTAndBroadcast(t *testing.T) {
	c := newCluster(t, 10, five)
	waitFor(t, "every node sees 5 alive", 20*time.Second, func() bool {
		for _, n := range c.nodes {
			if n.NumMembers() != 5 {
				return false
			}
		}
		return true
	})
	// Metadata: region, role, addresses.
	mem, ok := c.nodes[0].Member("au1")
	if !ok || mem.Region != topology.AU || mem.Role != membership.RoleCore || mem.Meta.Addrs["raft"] != "127.0.40.13:7947" || mem.Meta.Version != "test" {
		t.Fatalf("au1 as seen by jp1: %+v", mem)
	}
	if w, _ := c.nodes[0].Member("wit"); w.Role != membership.RoleWitness || w.Region != "" {
		t.Fatalf("witness: %+v", w)
	}
	// RTT: every node's row is published, so every node has the full
	// 4-region matrix (10 pairs incl. none intra-region with 1 node per
	// region: 6 inter-region pairs).
	waitFor(t, "full RTT matrix on every node", 30*time.Second, func() bool {
		for _, n := range c.nodes {
			m := n.RTTMatrix()
			for _, a := range []topology.RegionID{topology.JP, topology.US, topology.DE, topology.AU} {
				for _, b := range []topology.RegionID{topology.JP, topology.US, topology.DE, topology.AU} {
					if a != b {
						if _, ok := m.Get(a, b); !ok {
							return false
						}
					}
				}
			}
		}
		return true
	})
	if d, _ := c.nodes[4].RTTMatrix().Get(topology.JP, topology.AU); d <= 0 || d > time.Second {
		t.Fatalf("implausible loopback RTT %s", d)
	}
	var _ steering.Matrix = c.nodes[0].RTTMatrix()

	// Broadcast: every invalidation reaches every other node (relayed:
	// epidemic), each once, and an older revision never follows a newer.
	for k := 0; k < 20; k++ {
		if err := c.nodes[k%5].Broadcast(membership.Invalidation{IMSI: topology.IMSI(fmt.Sprintf("0010100000000%02d", k)), Revision: 7}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.nodes[0].Broadcast(membership.Invalidation{IMSI: "001010000000000", Revision: 5}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "20 invalidations on every other node", 20*time.Second, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, s := range five {
			got := map[topology.IMSI]bool{}
			for _, inv := range c.invs[s.name] {
				got[inv.IMSI] = true
			}
			if len(got) != 20-4 || (i != 0 && !got["001010000000005"]) {
				return false
			}
		}
		return true
	})
	c.mu.Lock()
	for name, invs := range c.invs {
		seen := map[topology.IMSI]bool{}
		for _, inv := range invs {
			if seen[inv.IMSI] || inv.Revision != 7 {
				t.Errorf("%s got %+v twice or stale", name, inv)
			}
			seen[inv.IMSI] = true
		}
	}
	c.mu.Unlock()
	if err := c.nodes[1].SetLoad(420); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "load gossiped", 20*time.Second, func() bool {
		m, _ := c.nodes[3].Member("us1")
		return m.Meta.Load == 420
	})
}

func TestKillIsDeadAndPartitionHealsByRejoin(t *testing.T) {
	c := newCluster(t, 20, five)
	waitFor(t, "5 alive", 20*time.Second, func() bool { return c.nodes[0].NumMembers() == 5 && c.nodes[3].NumMembers() == 5 })

	// Crash (no leave): everyone else marks de1 dead; the view keeps it.
	c.nodes[2].Close()
	c.nodes[2] = nil
	waitFor(t, "de1 dead everywhere", 30*time.Second, c.allSee("de1", membership.StateDead))

	// Isolate au1 long enough for both sides to declare each other dead.
	c.net.Partition([]netip.Addr{c.ips[3]})
	waitFor(t, "au1 dead on the majority", 30*time.Second, c.allSee("au1", membership.StateDead, 3))
	waitFor(t, "majority dead on au1", 60*time.Second, func() bool {
		return stateOf(c.nodes[3], "jp1") == membership.StateDead && stateOf(c.nodes[3], "wit") == membership.StateDead
	})
	c.net.Heal()
	// Only the re-join loop merges the two sides again (memberlist#222).
	waitFor(t, "au1 alive again everywhere", 30*time.Second, c.allSee("au1", membership.StateAlive, 3))
	waitFor(t, "au1 sees the majority", 30*time.Second, func() bool {
		return stateOf(c.nodes[3], "jp1") == membership.StateAlive && stateOf(c.nodes[3], "wit") == membership.StateAlive
	})

	// The crashed node restarts and rejoins.
	c.start(2, five[2], key, "rv-fed-test")
	waitFor(t, "de1 alive again", 30*time.Second, c.allSee("de1", membership.StateAlive))
}

func TestLabelAndKeyIsolateClusters(t *testing.T) {
	specs := five[:2]
	c := newCluster(t, 30, specs[:1])
	c.ips = append(c.ips, ip(30, 1))
	c.nodes = append(c.nodes, nil)
	// Same address space, other label: never joins.
	c.start(1, specs[1], key, "rv-fed-staging")
	wrongKey := []byte("fedcba9876543210fedcba9876543210")
	c.ips = append(c.ips, ip(30, 2))
	c.nodes = append(c.nodes, nil)
	c.seeds = append(c.seeds, netip.AddrPortFrom(ip(30, 2), gossipPort).String())
	c.start(2, spec{"de1", topology.DE, membership.RoleCore}, wrongKey, "rv-fed-test")
	time.Sleep(2 * time.Second) // a negative: give them time to (not) join
	for i, n := range c.nodes {
		if n.NumMembers() != 1 {
			t.Errorf("node %d sees %d members; a wrong label or key must isolate it", i, n.NumMembers())
		}
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []membership.Config{
		{},
		{Name: "x", BindAddr: "127.0.40.99"}, // core without region
		{Name: "x", Region: "JP", BindAddr: "127.0.40.99", SecretKey: []byte("short")},
		{Name: "x", Region: "JP", BindAddr: "127.0.40.99", Role: "boss"},
		{Name: "x", Region: "JP", BindAddr: "127.0.40.99", Addrs: map[string]string{"big": string(make([]byte, 600))}},
	} {
		if m, err := membership.New(cfg); err == nil {
			m.Close()
			t.Errorf("New(%+v) accepted", cfg)
		}
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
