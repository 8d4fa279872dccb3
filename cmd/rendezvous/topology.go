package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
	"github.com/spf13/cobra"
)

// newTopologyCmd answers questions about the topology: which region serves
// a visited network first (rank), which country an MCC is (mcc), where the
// regions are (regions). Bad arguments are usageErrors (exit 2).
func newTopologyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Inspect the federation's topology: regions, MCCs, region ranking",
	}
	cmd.AddCommand(newTopologyRankCmd(), newTopologyMCCCmd(), newTopologyRegionsCmd())
	return cmd
}

// outputFlag adds -o/--output (table or json) to cmd.
func outputFlag(cmd *cobra.Command) *string {
	return cmd.Flags().StringP("output", "o", "table", "output format: table or json")
}

func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return usageError{fmt.Errorf("bad --output %q: want table or json", o)}
	}
	return nil
}

// oneArg is cobra.ExactArgs(1) whose error is a usageError.
func oneArg(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageError{fmt.Errorf("%s: want 1 argument, got %d", cmd.CommandPath(), len(args))}
	}
	return nil
}

// parseVisited accepts an MCC ("334") or a PLMN ("334020", "26201") and
// returns its MCC.
func parseVisited(s string) (topology.MCC, error) {
	if len(s) == 3 {
		m, err := topology.ParseMCC(s)
		if err != nil {
			return "", usageError{err}
		}
		return m, nil
	}
	p, err := topology.ParsePLMN(s)
	if err != nil {
		return "", usageError{fmt.Errorf("bad PLMN or MCC %q: want 3 (MCC), 5 or 6 (MCC+MNC) digits", s)}
	}
	return p.MCC, nil
}

func lookupCountry(m topology.MCC) (topology.Country, error) {
	c, ok := topology.LookupMCC(m)
	if !ok {
		return c, usageError{fmt.Errorf("MCC %q: not a geographic MCC of ITU-T E.212 (shared 9xx codes and unassigned codes have no location)", string(m))}
	}
	return c, nil
}

// rankRow is one line of `topology rank -o json`.
type rankRow struct {
	Region topology.RegionID `json:"region"`
	RTTMS  float64           `json:"rtt_ms"`
	KM     float64           `json:"km"`
}

func newTopologyRankCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rank <PLMN or MCC>",
		Short: "Rank the regions for a visited network, nearest (lowest estimated RTT) first",
		Long: `Rank the regions for a visited network by estimated round-trip time from the
country of its MCC: great-circle distance × path stretch ` + fmt.Sprint(topology.PathStretch) + `, light in fibre at
` + fmt.Sprint(topology.FibreKMPerMS) + ` km/ms. The argument is an MCC (334), or an MCC+MNC (334020, 26201).`,
		Example: "  rendezvous topology rank 334\n  rendezvous topology rank 26201 -o json",
		Args:    oneArg,
	}
	out := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkOutput(*out); err != nil {
			return err
		}
		m, err := parseVisited(args[0])
		if err != nil {
			return err
		}
		c, err := lookupCountry(m)
		if err != nil {
			return err
		}
		est, err := topology.Rank(m)
		if err != nil {
			return err
		}
		rows := make([]rankRow, len(est))
		for i, e := range est {
			// km to the kilometre, RTT to 0.1 ms: the model is no more
			// precise than that.
			rows[i] = rankRow{Region: e.Region, RTTMS: math.Round(float64(e.RTT)/float64(100*time.Microsecond)) / 10, KM: math.Round(e.KM)}
		}
		w := cmd.OutOrStdout()
		if *out == "json" {
			return writeJSON(w, rows)
		}
		fmt.Fprintf(w, "MCC %s: %s (%s)\n", c.MCC, c.Name, c.Alpha2)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "REGION\tKM\tRTT_MS")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%.0f\t%.1f\n", r.Region, r.KM, r.RTTMS)
		}
		return tw.Flush()
	}
	return cmd
}

// countryRow is `topology mcc -o json`.
type countryRow struct {
	MCC    topology.MCC `json:"mcc"`
	Alpha2 string       `json:"alpha2"`
	Name   string       `json:"name"`
	Lat    float64      `json:"lat"`
	Lon    float64      `json:"lon"`
}

func newTopologyMCCCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "mcc <MCC>",
		Short:   "Show the country (ISO 3166-1) and location of an MCC (ITU-T E.212)",
		Example: "  rendezvous topology mcc 262",
		Args:    oneArg,
	}
	out := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkOutput(*out); err != nil {
			return err
		}
		m, err := parseVisited(args[0])
		if err != nil {
			return err
		}
		c, err := lookupCountry(m)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if *out == "json" {
			return writeJSON(w, countryRow{MCC: c.MCC, Alpha2: c.Alpha2, Name: c.Name, Lat: c.Lat, Lon: c.Lon})
		}
		_, err = fmt.Fprintf(w, "MCC %s: %s (%s), location %.4f, %.4f\n", c.MCC, c.Name, c.Alpha2, c.Lat, c.Lon)
		return err
	}
	return cmd
}

func newTopologyRegionsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "regions",
		Short: "List the regions and their locations",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return usageError{fmt.Errorf("%s: takes no arguments", cmd.CommandPath())}
			}
			return nil
		},
	}
	out := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkOutput(*out); err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if *out == "json" {
			type row struct {
				Region topology.RegionID `json:"region"`
				City   string            `json:"city"`
				Lat    float64           `json:"lat"`
				Lon    float64           `json:"lon"`
			}
			var rows []row
			for _, r := range topology.Regions() {
				rows = append(rows, row{r.ID, r.City, r.Lat, r.Lon})
			}
			return writeJSON(w, rows)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "REGION\tCITY\tLAT\tLON")
		for _, r := range topology.Regions() {
			fmt.Fprintf(tw, "%s\t%s\t%.4f\t%.4f\n", r.ID, r.City, r.Lat, r.Lon)
		}
		return tw.Flush()
	}
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
