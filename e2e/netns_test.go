package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/consensus"
	"github.com/rendezvous-core/rendezvous/federation/membership"
	"github.com/rendezvous-core/rendezvous/lab"
	"github.com/rendezvous-core/rendezvous/lab/netns"
	"github.com/rendezvous-core/rendezvous/region/opapi"
	"github.com/rendezvous-core/rendezvous/roamsim"
	"github.com/rendezvous-core/rendezvous/topology"
)

// TestNetnsChild is not a test: it is the entry point of the namespace
// lab's child processes (nodes and the visited network), which re-execute
// this test binary with "-test.run=^TestNetnsChild$ -- SPEC.json" (the
// helper-process pattern of os/exec's tests).
func TestNetnsChild(t *testing.T) {
	args := flag.Args()
	if len(args) != 1 || !strings.HasSuffix(args[0], ".json") {
		t.Skip("entry point of the namespace lab's child processes")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := netns.RunChild(ctx, args[0], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// startNetns starts the namespace lab with the test timings, its nodes
// being this test binary re-executed (TestNetnsChild).
func startNetns(t *testing.T, subscribers int) *netns.Cluster {
	t.Helper()
	requireRoot(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	dir := t.TempDir()
	c, err := startWhenFree(ctx, netns.Config{
		StateDir:      dir,
		Command:       []string{exe, "-test.run=^TestNetnsChild$", "-test.timeout=0", "--"},
		Subscribers:   subscribers,
		GossipProfile: membership.TestProfile(),
		RaftTiming:    consensus.TestTiming(),
		Policy:        consensus.PolicyConfig{ConfirmWindow: time.Second, HealthyWindow: 3 * time.Second, RetryAfter: 2 * time.Second},
		RehomeRate:    50,
	})
	if err != nil {
		t.Fatalf("start namespace lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, dir)
		}
		if err := c.Close(); err != nil {
			t.Errorf("close namespace lab: %v", err)
		}
	})
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// startWhenFree starts a namespace lab, waiting (at most a minute) while
// another one runs: there is one per machine.
func startWhenFree(ctx context.Context, cfg netns.Config) (*netns.Cluster, error) {
	busyUntil := time.Now().Add(time.Minute)
	for {
		c, err := netns.Start(ctx, cfg)
		if !errors.Is(err, netns.ErrBusy) || time.Now().After(busyUntil) {
			return c, err
		}
		time.Sleep(time.Second)
	}
}

func dumpLogs(t *testing.T, dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	for _, l := range logs {
		data, _ := os.ReadFile(l)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		t.Logf("--- %s (last lines)\n%s", filepath.Base(l), strings.Join(lines, "\n"))
	}
}

// regionTable reads a node's committed routing table: region → state.
func regionTable(t *testing.T, c *netns.Cluster, node string) map[topology.RegionID]opapi.Route {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.API(node).Status(ctx)
	if err != nil {
		t.Fatalf("status of %s: %v", node, err)
	}
	out := map[topology.RegionID]opapi.Route{}
	for _, r := range st.Table {
		out[r.Region] = r
	}
	return out
}

func tableState(c *netns.Cluster, node string, r topology.RegionID) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := c.API(node).Status(ctx)
	if err != nil {
		return ""
	}
	for _, row := range st.Table {
		if row.Region == r {
			return row.State
		}
	}
	return ""
}

// waitSteered waits until every device is attached at its nearest region
// among the healthy ones and has passed data since, and returns the
// assessment.
func waitSteered(t *testing.T, d *netns.Devices, healthy func(topology.RegionID) bool, within time.Duration) lab.Assessment {
	t.Helper()
	deadline := time.Now().Add(within)
	var a lab.Assessment
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rep, err := d.Live(ctx)
		cancel()
		if err == nil && len(rep.Devices) == rep.Totals.Devices {
			if a = lab.Assess(rep, roamsim.DefaultCountries(), healthy); a.OK {
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("devices not at their nearest healthy region with data after %v (err %v): %+v", within, err, a)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func allHealthy(topology.RegionID) bool { return true }

// TestNetnsFailover runs the federation as processes in network
// namespaces and proves, in order: nearest-region steering for devices
// from every continent; kill -9 of a region's process → its devices
// recover at the next-nearest region and the other regions lose no
// session; restart; a partitioned region decides nothing while the
// majority fails it over; heal → the policy restores it.
func TestNetnsFailover(t *testing.T) {
	c := startNetns(t, 60)
	ctx := context.Background()
	devs, err := c.StartDevices(ctx, netns.DevicesConfig{RetryInterval: time.Second, EchoInterval: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a := waitSteered(t, devs, allHealthy, 60*time.Second)
	if len(a.Continents) < 6 {
		t.Fatalf("steering across namespaces: devices from %v only", a.Continents)
	}
	t.Logf("steering: %d devices from %d countries on %v at their nearest region", a.Devices, a.Countries, a.Continents)

	// kill -9 a region that is not the raft leader's.
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	victim, victimRegion := "de", topology.DE
	if leader == victim {
		victim, victimRegion = "au", topology.AU
	}
	killRegion(t, c, devs, victim, victimRegion)

	// Restart it: the policy restores the region after the healthy window.
	if err := c.Restart(ctx, victim); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, string(victimRegion)+" restored", func() bool {
		return tableState(c, leader, victimRegion) == "active"
	})
	act(t, c, victimRegion, opapi.Rebalance)
	waitSteered(t, devs, allHealthy, 45*time.Second)

	// Partition a region alone (again not the leader's).
	leader, err = c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cut, cutRegion := "us", topology.US
	if leader == cut {
		cut, cutRegion = "jp", topology.JP
	}
	own := regionTable(t, c, cut)
	if err := c.Partition(ctx, cut); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	waitFor(t, 30*time.Second, "the majority fails "+cut+" over", func() bool {
		return tableState(c, leader, cutRegion) == "failed"
	})
	// The minority has no leader: its table is what it was.
	got := regionTable(t, c, cut)
	for r, row := range own {
		if g := got[r]; g.State != row.State || g.Epoch != row.Epoch {
			t.Errorf("partitioned %s changed its table: %s %s@%d → %s@%d", cut, r, row.State, row.Epoch, g.State, g.Epoch)
		}
	}
	failedAfter := time.Since(cutAt)
	if err := c.Heal(ctx, cut); err != nil {
		t.Fatal(err)
	}
	healedAt := time.Now()
	waitFor(t, 40*time.Second, string(cutRegion)+" restored after heal", func() bool {
		for _, n := range c.Nodes() {
			if tableState(c, n, cutRegion) != "active" {
				return false
			}
		}
		return true
	})
	t.Logf("partition %s: the majority failed it over after %v, its own table unchanged; heal: restored by policy after %v",
		cut, failedAfter.Round(time.Millisecond), time.Since(healedAt).Round(time.Millisecond))
	// The devices moved off the partitioned region come back when an
	// operator rebalances it.
	act(t, c, cutRegion, opapi.Rebalance)
	waitSteered(t, devs, allHealthy, 45*time.Second)

	// kill -9 the raft leader's region: a new leader (elected by the
	// survivors) fails it over.
	if leader, err = c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if m, ok := nodeRegions[leader]; ok {
		killRegion(t, c, devs, leader, m)
	} else {
		t.Logf("the raft leader is the %s: no region to kill", leader)
	}
	if _, err := devs.Stop(ctx); err != nil {
		t.Errorf("stop devices: %v", err)
	}
}

var nodeRegions = map[string]topology.RegionID{"jp": topology.JP, "us": topology.US, "de": topology.DE, "au": topology.AU}

// killRegion kill -9s a region's only node and checks that every surviving
// node fails the region, its devices recover at their nearest healthy
// region, and no other region loses a session.
func killRegion(t *testing.T, c *netns.Cluster, devs *netns.Devices, victim string, victimRegion topology.RegionID) {
	t.Helper()
	ctx := context.Background()
	before := netns.Sessions(c.Status(ctx))
	pid := c.PID(victim)
	killed := time.Now()
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, victim+" failed on every surviving node", func() bool {
		for _, n := range c.Nodes() {
			if c.Running(n) && tableState(c, n, victimRegion) != "failed" {
				return false
			}
		}
		return true
	})
	decided := time.Since(killed)
	healthy := func(r topology.RegionID) bool { return r != victimRegion }
	waitSteered(t, devs, healthy, 45*time.Second)
	after := netns.Sessions(c.Status(ctx))
	for r, n := range before {
		if r != victimRegion && after[r] < n {
			t.Errorf("region %s lost sessions: %d before the kill, %d after", r, n, after[r])
		}
	}
	rec := recoveries(mustEvents(t, devs, 0), killed, victimRegion)
	t.Logf("kill -9 %s (pid %d): decision after %v; %d devices recovered at the next-nearest region: median %v, p95 %v, max %v; sessions before %v, after %v",
		victim, pid, decided.Round(time.Millisecond), len(rec), pct(rec, 50), pct(rec, 95), pct(rec, 100), before, after)
	if len(rec) != before[victimRegion] {
		t.Errorf("%d of %s's %d sessions recovered elsewhere", len(rec), victimRegion, before[victimRegion])
	}
}

// act performs an operator action through any running node's API (a
// follower forwards it to the leader), retrying while leadership settles.
func act(t *testing.T, c *netns.Cluster, r topology.RegionID, a opapi.Action) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var err error
		for _, n := range c.Nodes() {
			if !c.Running(n) {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err = c.API(n).Act(ctx, r, a)
			cancel()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: %v", a, r, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func mustEvents(t *testing.T, d *netns.Devices, from int) []roamsim.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, err := d.Events(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// recoveries: per device served by the failed region at the fault, the
// time from the fault to its first data through another region.
func recoveries(evs []roamsim.Event, fault time.Time, failed topology.RegionID) []time.Duration {
	at := map[topology.IMSI]topology.RegionID{}
	var out []time.Duration
	for _, e := range evs {
		if e.Time.Before(fault) {
			if e.Kind == roamsim.EventAttached {
				at[e.IMSI] = e.Region
			}
			continue
		}
		if e.Kind == roamsim.EventFirstData && e.Region != failed && at[e.IMSI] == failed {
			out = append(out, e.Time.Sub(fault))
			delete(at, e.IMSI)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := (len(ds)*p + 99) / 100
	if i > 0 {
		i--
	}
	return ds[i].Round(time.Millisecond)
}

// TestNetnsFailedStartCleansUp: a start that fails after the namespaces
// and PostgreSQL are up (the node processes exit at once) removes
// everything it created.
func TestNetnsFailedStartCleansUp(t *testing.T) {
	requireRoot(t)
	pgDirs := func() int { m, _ := filepath.Glob(filepath.Join(os.TempDir(), "rdvns-pg-*")); return len(m) }
	pgBefore := pgDirs()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c, err := startWhenFree(ctx, netns.Config{StateDir: t.TempDir(), Command: []string{"/bin/false"}, Subscribers: 4})
	if err == nil {
		c.Close()
		t.Fatal("start with children that exit at once succeeded")
	}
	if errors.Is(err, netns.ErrBusy) {
		t.Fatal(err)
	}
	t.Logf("start failed as it should: %v", err)
	if ns, _ := filepath.Glob("/run/netns/rdvns-*"); len(ns) > 0 {
		t.Errorf("namespaces left behind: %v", ns)
	}
	if _, err := os.Stat("/sys/class/net/rdvns-host"); err == nil {
		t.Error("host link rdvns-host left behind")
	}
	if n := pgDirs(); n > pgBefore {
		t.Errorf("PostgreSQL data directory left behind (%d → %d)", pgBefore, n)
	}
}
