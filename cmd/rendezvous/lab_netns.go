package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rendezvous-core/rendezvous/lab"
	"github.com/rendezvous-core/rendezvous/lab/netns"
)

// newLabChildCmd is the hidden entry point of the namespace lab's child
// processes (`rendezvous lab --netns` re-executes this binary as
// "rendezvous lab-child SPEC.json" inside each namespace).
func newLabChildCmd() *cobra.Command {
	return &cobra.Command{
		Use:    netns.ChildCommand + " SPEC.json",
		Short:  "Run one process of the namespace lab (internal)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return netns.RunChild(ctx, args[0], os.Stderr)
		},
	}
}

// runLabNetns is `rendezvous lab --netns`: the lab federation as one
// process per node in network namespaces (lab/netns), with a private
// PostgreSQL as the registry, roaming devices from every continent in the
// visited namespace, a status line every --status-every and the report.
func runLabNetns(ctx context.Context, f *labFlags, out io.Writer) error {
	if f.registry != "" {
		return usageError{errors.New("--registry: the namespace lab runs its own PostgreSQL in namespace rdvns-registry")}
	}
	if f.drill != "" {
		return usageError{errors.New("--drill is not supported with --netns yet (netns.Cluster has Kill, Partition, Heal, Pause, RegistryDown)")}
	}
	log, err := newLogger(f.logLevel)
	if err != nil {
		return usageError{err}
	}
	if os.Geteuid() != 0 {
		return errors.New("lab --netns: needs root (network namespaces, veths, nftables, TUN devices): run it with sudo")
	}
	ctx, stateDir, cleanup, err := labContext(ctx, f, "rendezvous-lab-netns-")
	if err != nil {
		return err
	}
	defer cleanup()
	say := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "lab: "+format+"\n", args...) }
	say("state and logs in %s; starting namespaces, PostgreSQL, four regions and the witness", stateDir)
	started := time.Now()
	c, err := netns.Start(ctx, netns.Config{
		StateDir:        stateDir,
		SubscribersFile: f.subscribers,
		Subscribers:     f.generate,
		RehomeRate:      f.rehomeRate,
		Version:         version,
		LogLevel:        f.logLevel,
		Logger:          log,
	})
	if err != nil {
		return err
	}
	defer func() {
		say("stopping")
		if err := c.Close(); err != nil {
			say("stop: %v", err)
		}
	}()
	leaderCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	leader, err := c.WaitLeader(leaderCtx)
	cancel()
	if err != nil {
		return err
	}
	say("raft leader %s; federation file %s; registry %s", leader, c.FederationFile(), c.RegistryDSN())
	var apis []string
	for _, n := range c.Nodes() {
		apis = append(apis, n+" "+strings.TrimPrefix(c.API(n).Base, "http://"))
	}
	say("operator APIs (token in %s/api-token): %s", stateDir, strings.Join(apis, ", "))
	devices, err := c.StartDevices(ctx, netns.DevicesConfig{Max: f.devices})
	if err != nil {
		return err
	}
	say("visited network in namespace rdvns-visited; internet in rdvns-inet")

	tick := time.NewTicker(f.statusEvery)
	defer tick.Stop()
	tty := isTerminal(out)
	var snap lab.Snapshot
	for {
		snap = c.Snapshot(ctx)
		line := ""
		if rep, err := devices.Snapshot(ctx); err == nil {
			t := rep.Totals
			line = fmt.Sprintf("devices: %d, attached %d, failed %d, re-attaches %d, data %d/%d, attach p50 %.1f ms, RTT p50 %.1f ms",
				t.Devices, t.Attached, t.Failed, t.Reattaches, t.Received, t.Sent, t.AttachP50, t.RTTP50)
		}
		if tty {
			fmt.Fprint(out, "\033[H\033[2J")
			snap.WriteTable(out, line)
		} else {
			fmt.Fprintln(out, snap.LogLine(), line)
		}
		select {
		case <-ctx.Done():
			return finishLabNetns(c, devices, snap, started, f, out, say)
		case <-tick.C:
		}
	}
}

func finishLabNetns(c *netns.Cluster, devices *netns.Devices, snap lab.Snapshot, started time.Time, f *labFlags,
	out io.Writer, say func(string, ...any)) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	final, err := devices.Stop(ctx)
	if err != nil {
		say("visited network: %v", err)
	}
	return completeReport(lab.Report{Started: started}, final, snap, f, out, say)
}
