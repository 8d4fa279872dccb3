// Command rdvctl is the operator CLI of a Rendezvous federation: federation
// status and region drain, failover, restore and rebalance through a node's
// operator API.
//
// It finds the API from --api or RDV_API and the token from --token or
// RDV_TOKEN; with neither, it uses the running lab's, which the lab writes
// to $XDG_STATE_HOME/rendezvous/lab.json (~/.local/state/rendezvous/lab.json).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rendezvous-core/rendezvous/region/opapi"
	"github.com/rendezvous-core/rendezvous/topology"
)

const exitUsage = 2

type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

type globals struct {
	api, token, output string
	timeout            time.Duration
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(os.Getenv)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "rdvctl:", err)
		var ue usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return 1
	}
	return 0
}

func newRootCmd(getenv func(string) string) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "rdvctl",
		Short:         "Operate a Rendezvous federation: status, drain, failover, restore",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVar(&g.api, "api", "", "operator API base URL (default $RDV_API, else the running lab's)")
	root.PersistentFlags().StringVar(&g.token, "token", "", "bearer token (default $RDV_TOKEN, else the running lab's)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	root.PersistentFlags().DurationVar(&g.timeout, "timeout", 10*time.Second, "request timeout")

	client := func() (*opapi.Client, error) {
		if g.output != "table" && g.output != "json" {
			return nil, usageError{fmt.Errorf("-o %q: want table or json", g.output)}
		}
		api, token := g.api, g.token
		if api == "" {
			api = getenv("RDV_API")
		}
		if token == "" {
			token = getenv("RDV_TOKEN")
		}
		if api == "" || token == "" {
			lab, path, err := readLabFile(getenv)
			if err != nil {
				return nil, usageError{fmt.Errorf("no API given (--api/RDV_API, --token/RDV_TOKEN) and no running lab: %w", err)}
			}
			if api == "" {
				api = lab.API
			}
			if token == "" {
				token = lab.Token
			}
			_ = path
		}
		if !strings.Contains(api, "://") {
			api = "http://" + api
		}
		return &opapi.Client{Base: api, Token: token}, nil
	}

	status := &cobra.Command{
		Use:   "status",
		Short: "Show members, raft leader, routing table, RTT matrix and re-homing progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
			defer cancel()
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			printStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}

	region := &cobra.Command{Use: "region", Short: "Drain, fail over, restore or rebalance a region"}
	for _, a := range []struct {
		action opapi.Action
		short  string
	}{
		{opapi.Drain, "Stop steering new devices to REGION and move its devices away at the bounded rate"},
		{opapi.Failover, "Declare REGION failed now: steer around it and re-home its devices"},
		{opapi.Restore, "Make REGION active again (devices are not forced back)"},
		{opapi.Rebalance, "Move devices back to their nearest healthy region at the bounded rate"},
	} {
		a := a
		region.AddCommand(&cobra.Command{
			Use:   string(a.action) + " REGION",
			Short: a.short,
			Args: func(_ *cobra.Command, args []string) error {
				if len(args) != 1 {
					return usageError{fmt.Errorf("%s needs exactly one REGION (JP, US, DE or AU)", a.action)}
				}
				if _, ok := topology.LookupRegion(topology.RegionID(strings.ToUpper(args[0]))); !ok {
					return usageError{fmt.Errorf("unknown region %q (want JP, US, DE or AU)", args[0])}
				}
				return nil
			},
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := client()
				if err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
				defer cancel()
				res, err := c.Act(ctx, topology.RegionID(strings.ToUpper(args[0])), a.action)
				if err != nil {
					return err
				}
				if g.output == "json" {
					return writeJSON(cmd.OutOrStdout(), res)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s: now %s (epoch %d)\n", res.Action, res.Region, res.State, res.Epoch)
				return nil
			},
		})
	}
	var drillTimeout time.Duration
	var controlURL string
	drill := &cobra.Command{
		Use:   "drill SPEC",
		Short: `Run a drill against the running lab, e.g. "kill DE at 10s; restore DE at 40s"`,
		Long: `Run a drill against the running lab and print its report. Steps:
kill|restore REGION at D, partition|pause REGION at D for D, registry-down at D for D.
The lab's control address and token come from --control/--token or the lab's state file.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{errors.New("drill needs exactly one SPEC (quote it)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.output != "table" && g.output != "json" {
				return usageError{fmt.Errorf("-o %q: want table or json", g.output)}
			}
			token := g.token
			if token == "" {
				token = getenv("RDV_TOKEN")
			}
			if controlURL == "" || token == "" {
				lf, _, err := readLabFile(getenv)
				if err != nil {
					return usageError{fmt.Errorf("no --control and no running lab: %w", err)}
				}
				if controlURL == "" {
					controlURL = lf.Control
				}
				if token == "" {
					token = lf.Token
				}
			}
			if controlURL == "" {
				return usageError{errors.New("the running lab has no control address (too old?)")}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), drillTimeout)
			defer cancel()
			raw, err := (&opapi.Client{Base: controlURL, Token: token}).Drill(ctx, args[0])
			if err != nil {
				return err
			}
			if g.output == "json" {
				var v any
				_ = json.Unmarshal(raw, &v)
				return writeJSON(cmd.OutOrStdout(), v)
			}
			return printDrill(cmd.OutOrStdout(), raw)
		},
	}
	drill.Flags().DurationVar(&drillTimeout, "drill-timeout", 15*time.Minute, "how long to wait for the drill's report")
	drill.Flags().StringVar(&controlURL, "control", "", "the lab's control API (default from the running lab's state file)")
	root.AddCommand(status, region, drill)
	return root
}

// labFilePath is where a running lab writes its API address and token.
func labFilePath(getenv func(string) string) (string, error) {
	dir := getenv("XDG_STATE_HOME")
	if dir == "" {
		home := getenv("HOME")
		if home == "" {
			return "", errors.New("neither XDG_STATE_HOME nor HOME is set")
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "rendezvous", "lab.json"), nil
}

func readLabFile(getenv func(string) string) (opapi.LabFile, string, error) {
	path, err := labFilePath(getenv)
	if err != nil {
		return opapi.LabFile{}, "", err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return opapi.LabFile{}, path, err
	}
	var lf opapi.LabFile
	if err := json.Unmarshal(data, &lf); err != nil {
		return opapi.LabFile{}, path, fmt.Errorf("%s: %w", path, err)
	}
	if lf.API == "" || lf.Token == "" {
		return opapi.LabFile{}, path, fmt.Errorf("%s: api or token missing", path)
	}
	return lf, path, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printStatus(w io.Writer, st opapi.Status) {
	leader := st.Leader
	if leader == "" {
		leader = "(none: no quorum)"
	}
	fmt.Fprintf(w, "node %s  region %s  raft leader %s  epoch %d", st.Node, st.Region, leader, st.Epoch)
	if st.Degraded {
		fmt.Fprint(w, "  REGISTRY DEGRADED (serving from cache)")
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	load := map[topology.RegionID]opapi.Load{}
	for _, l := range st.Regions {
		load[l.Region] = l
	}
	members := map[topology.RegionID][2]int{}
	for _, m := range st.Members {
		c := members[m.Region]
		c[1]++
		if m.State == "alive" {
			c[0]++
		}
		members[m.Region] = c
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tSTATE\tEPOCH\tMEMBERS\tATTACHED\tSESSIONS\tPKT/S\tFAILOVER\tREASON")
	for _, r := range st.Table {
		m := members[r.Region]
		l := load[r.Region]
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d/%d\t%d\t%d\t%.0f\t%s\t%s\n", r.Region, r.State, r.Epoch, m[0], m[1],
			l.Attached, l.Sessions, l.PacketsPerSec, joinRegions(r.FailoverTo), r.Reason)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tREGION\tROLE\tSTATE\tADDRESS")
	for _, m := range st.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Name, m.Region, m.Role, m.State, m.Addr)
	}
	tw.Flush()
	if len(st.RTT) > 0 {
		fmt.Fprintln(w)
		var regions []topology.RegionID
		for r := range st.RTT {
			regions = append(regions, r)
		}
		sort.Slice(regions, func(i, j int) bool { return regions[i] < regions[j] })
		tw = tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "RTT ms\t")
		for _, r := range regions {
			fmt.Fprintf(tw, "%s\t", r)
		}
		fmt.Fprintln(tw)
		for _, a := range regions {
			fmt.Fprintf(tw, "%s\t", a)
			for _, b := range regions {
				if v, ok := st.RTT[a][b]; ok {
					fmt.Fprintf(tw, "%.0f\t", v)
				} else {
					fmt.Fprint(tw, "-\t")
				}
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
	rh := st.Rehoming
	fmt.Fprintf(w, "\nre-homing: ")
	if !rh.Active && rh.Total == 0 {
		fmt.Fprintln(w, "idle")
	} else {
		fmt.Fprintf(w, "%d/%d done, %d failed, %d remaining at %.1f/s\n", rh.Done, rh.Total, rh.Failed, rh.Remaining, rh.Rate)
	}
}

func joinRegions(rs []topology.RegionID) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}

// drillReport mirrors the lab's drill report (lab.DrillReport): rdvctl
// imports no lab code, it reads the JSON.
type drillReport struct {
	Spec  string `json:"spec"`
	Steps []struct {
		Step       string  `json:"step"`
		DetectedMS float64 `json:"detected_ms"`
		DecidedMS  float64 `json:"decided_ms"`
		Affected   int     `json:"affected_devices"`
		Recovery   struct {
			N   int     `json:"n"`
			P50 float64 `json:"p50_ms"`
			P95 float64 `json:"p95_ms"`
			Max float64 `json:"max_ms"`
		} `json:"recovery"`
		NotRecovered          int    `json:"not_recovered"`
		AttachesFailed        int    `json:"attaches_failed"`
		SessionsLostElsewhere int    `json:"sessions_lost_elsewhere"`
		MinorityDecided       bool   `json:"minority_decided"`
		Note                  string `json:"note"`
	} `json:"steps"`
	NotNearestAfter int `json:"not_at_nearest_healthy_after"`
}

func printDrill(w io.Writer, raw []byte) error {
	var d drillReport
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("drill report: %w", err)
	}
	fmt.Fprintf(w, "drill: %s\n\n", d.Spec)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tDETECTED ms\tDECIDED ms\tAFFECTED\tRECOVERY p50/p95/max ms\tNOT RECOVERED\tATTACH FAILS\tLOST ELSEWHERE\tNOTE")
	ms := func(v float64) string {
		if v < 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", v)
	}
	for _, s := range d.Steps {
		note := s.Note
		if s.MinorityDecided {
			note = strings.TrimSpace(note + " MINORITY DECIDED")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.0f/%.0f/%.0f\t%d\t%d\t%d\t%s\n", s.Step, ms(s.DetectedMS), ms(s.DecidedMS), s.Affected,
			s.Recovery.P50, s.Recovery.P95, s.Recovery.Max, s.NotRecovered, s.AttachesFailed, s.SessionsLostElsewhere, note)
	}
	tw.Flush()
	fmt.Fprintf(w, "\ndevices not at their nearest healthy region afterwards: %d\n", d.NotNearestAfter)
	return nil
}
