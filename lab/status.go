package lab

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

// RegionStatus is one row of the lab's live status table.
type RegionStatus struct {
	Region        topology.RegionID `json:"region"`
	State         string            `json:"state"`
	Epoch         uint64            `json:"epoch"`
	MembersAlive  int               `json:"members_alive"`
	Members       int               `json:"members"`
	Sessions      int               `json:"sessions"`
	PacketsUp     uint64            `json:"packets_up"`
	PacketsDown   uint64            `json:"packets_down"`
	PacketsPerSec float64           `json:"packets_per_sec"`
}

// Snapshot is the lab's state at one moment.
type Snapshot struct {
	Time     time.Time      `json:"time"`
	Leader   string         `json:"leader"`
	Regions  []RegionStatus `json:"regions"`
	Rehoming string         `json:"rehoming"`
}

// Snapshot reads every running node. Table and membership come from the
// first running core node that has a leader (every node applies the same
// table); sessions and packets from each region's own node.
func (l *Lab) Snapshot(prev *Snapshot) Snapshot {
	s := Snapshot{Time: time.Now()}
	rows := map[topology.RegionID]*RegionStatus{}
	for _, r := range topology.Regions() {
		rows[r.ID] = &RegionStatus{Region: r.ID, State: "unknown"}
	}
	nodes := l.Nodes()
	for _, n := range nodes {
		if id, _ := n.Consensus().Leader(); id != "" && s.Leader == "" {
			s.Leader = id
			tbl := n.Consensus().Table()
			for r, row := range tbl.Regions {
				if rs, ok := rows[r]; ok {
					rs.State, rs.Epoch = row.State.String(), row.Epoch
				}
			}
		}
	}
	for _, fn := range l.fed.Deployment.Nodes {
		if rs, ok := rows[fn.Region]; ok {
			rs.Members++
		}
	}
	for _, n := range nodes {
		rs, ok := rows[n.Self().Region]
		if !ok {
			continue
		}
		rs.MembersAlive++
		rs.Sessions += n.Sessions()
		st := n.BreakoutStats()
		rs.PacketsUp += st.PacketsUp
		rs.PacketsDown += st.PacketsDown
	}
	for _, r := range topology.Regions() {
		rs := rows[r.ID]
		if prev != nil {
			for _, p := range prev.Regions {
				if p.Region == r.ID {
					if dt := s.Time.Sub(prev.Time).Seconds(); dt > 0 && rs.PacketsUp+rs.PacketsDown >= p.PacketsUp+p.PacketsDown {
						rs.PacketsPerSec = float64(rs.PacketsUp+rs.PacketsDown-p.PacketsUp-p.PacketsDown) / dt
					}
				}
			}
		}
		s.Regions = append(s.Regions, *rs)
	}
	sort.Slice(s.Regions, func(i, j int) bool { return s.Regions[i].Region < s.Regions[j].Region })
	var rh []string
	for _, n := range nodes {
		if p := n.Rehoming(); p.Total > 0 {
			rh = append(rh, fmt.Sprintf("%s %d/%d (%d failed)", n.Name(), p.Done, p.Total, p.Failed))
		}
	}
	s.Rehoming = strings.Join(rh, ", ")
	return s
}

// WriteTable writes the snapshot as a table (for a terminal).
func (s Snapshot) WriteTable(w io.Writer, extra string) {
	leader := s.Leader
	if leader == "" {
		leader = "(none)"
	}
	fmt.Fprintf(w, "rendezvous lab  %s  raft leader: %s\n\n", s.Time.Format("15:04:05"), leader)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tSTATE\tEPOCH\tMEMBERS\tSESSIONS\tPKT/S")
	for _, r := range s.Regions {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d/%d\t%d\t%.0f\n", r.Region, r.State, r.Epoch, r.MembersAlive, r.Members, r.Sessions, r.PacketsPerSec)
	}
	tw.Flush()
	rh := s.Rehoming
	if rh == "" {
		rh = "idle"
	}
	fmt.Fprintf(w, "\nre-homing: %s\n", rh)
	if extra != "" {
		fmt.Fprintln(w, extra)
	}
}

// LogLine renders the snapshot as one line (when stdout is not a terminal).
func (s Snapshot) LogLine() string {
	var b strings.Builder
	fmt.Fprintf(&b, "leader=%s", s.Leader)
	for _, r := range s.Regions {
		fmt.Fprintf(&b, " %s=%s/members:%d/%d/sessions:%d/pps:%.0f", r.Region, r.State, r.MembersAlive, r.Members, r.Sessions, r.PacketsPerSec)
	}
	if s.Rehoming != "" {
		fmt.Fprintf(&b, " rehoming=%q", s.Rehoming)
	}
	return b.String()
}
