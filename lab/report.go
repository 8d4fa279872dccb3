package lab

import (
	"fmt"
	"strings"
	"time"

	"github.com/rendezvous-core/rendezvous/roamsim"
)

// Report is what a lab run writes with --report.
type Report struct {
	Started  time.Time `json:"started"`
	Duration string    `json:"duration"`
	// Final is the federation's state at the end of the run.
	Final Snapshot `json:"final"`
	// Assessment says whether every device ended at its nearest healthy
	// region and passed data.
	Assessment Assessment `json:"assessment"`
	// Devices is the visited network's report (per region, per country,
	// per device).
	Devices roamsim.Report `json:"devices"`
	// Drill is the drill's report, when one ran.
	Drill *DrillReport `json:"drill,omitempty"`
	// Summary is a Markdown summary of the run.
	Summary string `json:"summary_markdown"`
}

// Markdown renders the report's summary.
func (r Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Rendezvous lab run\n\nStarted %s, ran %s. Raft leader at the end: %s.\n\n",
		r.Started.Format(time.RFC3339), r.Duration, r.Final.Leader)
	fmt.Fprintf(&b, "| region | state | sessions | devices served | attach p50 ms | data RTT p50 ms |\n|---|---|---|---|---|---|\n")
	agg := map[string]roamsim.Aggregate{}
	for _, a := range r.Devices.Regions {
		agg[a.Key] = a
	}
	for _, s := range r.Final.Regions {
		a := agg[string(s.Region)]
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %.1f | %.1f |\n", s.Region, s.State, s.Sessions, a.EverOK, a.AttachP50, a.RTTP50)
	}
	a := r.Assessment
	verdict := "**OK**: every device attached at its nearest healthy region and passed data."
	if !a.OK {
		verdict = "**NOT OK**: see the assessment."
	}
	fmt.Fprintf(&b, "\n%d devices from %d countries on %d continents (%s): %d attached, %d at their nearest healthy region, %d passed data. %s\n",
		a.Devices, a.Countries, len(a.Continents), strings.Join(a.Continents, ", "), a.Attached, a.AtNearest, a.WithData, verdict)
	for _, n := range a.NotNearest {
		fmt.Fprintf(&b, "- not at nearest: %s\n", n)
	}
	if r.Drill != nil {
		b.WriteString(r.Drill.Markdown())
	}
	return b.String()
}

// Markdown renders the drill's results as a table.
func (d DrillReport) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Drill: %s\n\n", d.Spec)
	b.WriteString("| step | detected ms | decided ms | devices affected | recovery p50 / p95 / max ms | not recovered | attaches failed | sessions lost elsewhere | note |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range d.Steps {
		note := s.Note
		if s.MinorityDecided {
			note = strings.TrimSpace(note + " MINORITY DECIDED")
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %.0f / %.0f / %.0f | %d | %d | %d | %s |\n", s.Step, msOrDash(s.DetectedMS), msOrDash(s.DecidedMS),
			s.Affected, s.Recovery.P50, s.Recovery.P95, s.Recovery.Max, s.NotRecovered, s.AttachesFailed, s.SessionsLostElsewhere, note)
	}
	fmt.Fprintf(&b, "\nDevices not at their nearest healthy region afterwards: %d.\n", d.NotNearestAfter)
	return b.String()
}

func msOrDash(v float64) string {
	if v < 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f", v)
}
