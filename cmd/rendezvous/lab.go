package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rendezvous-core/rendezvous/breakout"
	"github.com/rendezvous-core/rendezvous/lab"
	"github.com/rendezvous-core/rendezvous/region/opapi"
	"github.com/rendezvous-core/rendezvous/roamsim"
	"github.com/rendezvous-core/rendezvous/topology"
)

type labFlags struct {
	registry, subscribers, stateDir, report string
	drill                                   string
	netns                                   bool
	generate, devices                       int
	duration, statusEvery                   time.Duration
	logLevel                                string
	rehomeRate                              float64
}

func newLabCmd() *cobra.Command {
	f := &labFlags{}
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run the whole federation on this machine (four regions and the witness)",
		Long: `Run the whole federation in one process on the lab addresses:
JP 127.0.1.1, US 127.0.2.1, DE 127.0.3.1, AU 127.0.4.1, witness 127.0.5.1, standard
ports on each (Diameter 3868, GTP-C 2123, GTP-U 2152, gossip 7946, raft 7947, API 8080).

The breakouts need root (TUN devices, routes, NAT) and the lab creates a network
namespace "rdv-lab-inet" that stands in for the internet. Diameter and GTP peers
from 127.0.0.0/8 are accepted, so outside tools can join in. rdvctl finds the
lab's API through the state file it writes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLab(cmd.Context(), f, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.registry, "registry", "", `registry DSN ("postgres://…"); default embedded SQLite in the state dir`)
	fl.StringVar(&f.subscribers, "subscribers", "", "CSV of subscribers: imsi,msisdn,ki,opc,amf,apn,home_region (hex keys); default generated")
	fl.IntVar(&f.generate, "generate", 200, "subscribers to generate without --subscribers")
	fl.IntVar(&f.devices, "devices", 0, "roaming devices (default one per subscriber)")
	fl.StringVar(&f.stateDir, "state-dir", "", "state directory (default a new temporary directory, removed at exit)")
	fl.StringVar(&f.report, "report", "", "write a JSON report to this file at exit")
	fl.DurationVar(&f.duration, "duration", 0, "stop after this long (default: run until SIGINT/SIGTERM)")
	fl.DurationVar(&f.statusEvery, "status-every", 2*time.Second, "status table refresh interval")
	fl.BoolVar(&f.netns, "netns", false, "one process per node in its own network namespace, kill -9 and nftables partitions, private PostgreSQL registry (root)")
	fl.StringVar(&f.drill, "drill", "", `drill steps, e.g. "kill DE at 10s; restore DE at 60s" (kill|restore|partition|pause REGION, registry-down; "at D [for D]")`)
	fl.Float64Var(&f.rehomeRate, "rehome-rate", 20, "devices per second each node moves off a failed region")
	fl.StringVar(&f.logLevel, "log-level", "warn", "node log level: debug, info, warn or error")
	return cmd
}

func runLab(ctx context.Context, f *labFlags, out io.Writer) error {
	if f.netns {
		if f.drill != "" {
			return usageError{errors.New("--drill runs on the in-process lab; with --netns use the e2e tests (e2e/netns_test.go)")}
		}
		return runLabNetns(ctx, f, out)
	}
	log, err := newLogger(f.logLevel)
	if err != nil {
		return usageError{err}
	}
	var steps []lab.Step
	if f.drill != "" {
		if steps, err = lab.ParseDrill(f.drill); err != nil {
			return usageError{err}
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("lab: the breakouts need root or CAP_NET_ADMIN (TUN devices, routes, nftables NAT) and the " +
			"lab's internet namespace needs CAP_SYS_ADMIN: run it with sudo")
	}
	ctx, stateDir, cleanup, err := labContext(ctx, f, "rendezvous-lab-")
	if err != nil {
		return err
	}
	defer cleanup()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	say := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "lab: "+format+"\n", args...) }
	say("state in %s; starting four regions and the witness", stateDir)
	started := time.Now()
	l, err := lab.Start(ctx, lab.Config{
		StateDir:        stateDir,
		RegistryDSN:     f.registry,
		SubscribersFile: f.subscribers,
		Subscribers:     f.generate,
		RehomeRate:      f.rehomeRate,
		Version:         version,
		Logger:          log,
	})
	if err != nil {
		if errors.Is(err, breakout.ErrNeedNetAdmin) {
			return fmt.Errorf("%w\n(run the lab as root)", err)
		}
		return err
	}
	defer func() {
		say("stopping")
		if err := l.Close(); err != nil {
			say("stop: %v", err)
		}
	}()
	leaderCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	leader, err := l.WaitLeader(leaderCtx)
	cancel()
	if err != nil {
		return err
	}
	say("raft leader %s; subscribers from %s", leader, l.SubscribersFile())

	rec := lab.NewRecorder()
	devices, err := l.StartDevices(ctx, lab.DevicesConfig{Max: f.devices, Mode: roamsim.Continuous, OnEvent: rec.OnEvent, Logger: log})
	if err != nil {
		return err
	}
	control, err := startLabControl(ctx, l, rec, say)
	if err != nil {
		return err
	}
	defer control.Close()
	labFile, err := writeLabFile(l, "http://"+control.Addr().String())
	if err != nil {
		say("could not write the lab file for rdvctl: %v", err)
	} else {
		defer os.Remove(labFile)
		say("operator API on %s (rdvctl status finds it through %s)", l.Nodes()[0].APIAddr(), labFile)
	}

	say("%s; devices roaming in %d countries attach through every region's HSS", "visited network on "+lab.VisitedNetwork.String(), len(roamsim.DefaultCountries()))

	report := lab.Report{Started: started}
	tty := isTerminal(out)
	var prev *lab.Snapshot
	tick := time.NewTicker(f.statusEvery)
	defer tick.Stop()
	drillDone := make(chan lab.DrillReport, 1)
	if len(steps) > 0 {
		go func() {
			// Steps count from when the devices are attached.
			for ctx.Err() == nil {
				s := devices.Snapshot().Totals
				if s.Devices > 0 && s.Attached == s.Devices {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			say("drill starts: %s", f.drill)
			rep, err := l.RunDrill(ctx, steps, rec, 30*time.Second)
			if err != nil && ctx.Err() == nil {
				say("drill: %v", err)
			}
			drillDone <- rep
		}()
	}
	for {
		snap := l.Snapshot(prev)
		prev = &snap
		dev := devices.Snapshot().Totals
		devLine := fmt.Sprintf("devices: %d, attached %d, failed %d, re-attaches %d, data %d/%d, attach p50 %.1f ms, RTT p50 %.1f ms",
			dev.Devices, dev.Attached, dev.Failed, dev.Reattaches, dev.Received, dev.Sent, dev.AttachP50, dev.RTTP50)
		if tty {
			fmt.Fprint(out, "\033[H\033[2J")
			snap.WriteTable(out, devLine)
		} else {
			fmt.Fprintln(out, snap.LogLine(), devLine)
		}
		report.Final = snap
		select {
		case d := <-drillDone:
			report.Drill = &d
			say("drill finished")
			fmt.Fprint(os.Stderr, d.Markdown())
			if f.duration == 0 {
				stop() // a drill run ends when the drill does, unless --duration says otherwise
			}
		case <-ctx.Done():
			final, derr := devices.Stop()
			if derr != nil {
				say("visited network: %v", derr)
			}
			if err := completeReport(report, final, snap, f, out, say); err != nil {
				return err
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(ctx.Err(), context.Canceled) {
				return nil
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func writeLabFile(l *lab.Lab, control string) (string, error) {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(home, ".local", "state")
	}
	dir = filepath.Join(dir, "rendezvous")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	api := l.Nodes()[0].APIAddr()
	data, _ := json.MarshalIndent(opapi.LabFile{API: "http://" + api.String(), Token: l.Token(), PID: os.Getpid(), Control: control}, "", "  ")
	path := filepath.Join(dir, "lab.json")
	return path, os.WriteFile(path, data, 0o600)
}

func writeReport(path string, r lab.Report) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// labContext applies the lab's signal handling (SIGINT, SIGTERM) and
// --duration to ctx, and makes the state directory: --state-dir, or a new
// temporary one that cleanup removes. cleanup also releases the signals.
func labContext(ctx context.Context, f *labFlags, tmpPrefix string) (context.Context, string, func(), error) {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	cancel := context.CancelFunc(func() {})
	if f.duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, f.duration)
	}
	stateDir, remove := f.stateDir, func() {}
	if stateDir == "" {
		dir, err := os.MkdirTemp("", tmpPrefix)
		if err != nil {
			cancel()
			stop()
			return nil, "", nil, err
		}
		stateDir, remove = dir, func() { os.RemoveAll(dir) }
	}
	return ctx, stateDir, func() { remove(); cancel(); stop() }, nil
}

// completeReport finishes a lab run's report from the visited network's
// final report and the last status snapshot (which regions were healthy),
// prints its Markdown summary and writes --report.
func completeReport(report lab.Report, final roamsim.Report, snap lab.Snapshot, f *labFlags, out io.Writer,
	say func(string, ...any)) error {
	report.Final = snap
	report.Devices = final
	report.Assessment = lab.Assess(final, roamsim.DefaultCountries(), func(r topology.RegionID) bool {
		for _, s := range snap.Regions {
			if s.Region == r {
				return s.State == "active"
			}
		}
		return false
	})
	report.Duration = time.Since(report.Started).Round(time.Millisecond).String()
	report.Summary = report.Markdown()
	fmt.Fprintln(out)
	fmt.Fprint(out, report.Summary)
	if f.report != "" {
		if err := writeReport(f.report, report); err != nil {
			return err
		}
		say("report written to %s", f.report)
	}
	return nil
}
