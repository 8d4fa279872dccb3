package opapi

import (
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

// Status is the document served at GET /v1/status.
type Status struct {
	Node    string            `json:"node"`
	Region  topology.RegionID `json:"region,omitempty"`
	Version string            `json:"version"`
	Time    time.Time         `json:"time"`
	// Leader is the raft leader's node name, "" while there is none.
	Leader   string   `json:"leader"`
	Members  []Member `json:"members"`
	Table    []Route  `json:"table"`
	Epoch    uint64   `json:"epoch"`
	Regions  []Load   `json:"regions"`
	Rehoming Rehoming `json:"rehoming"`
	// RTT is the measured region×region median RTT in milliseconds.
	RTT map[topology.RegionID]map[topology.RegionID]float64 `json:"rtt_ms,omitempty"`
	// Degraded is true while the registry is unreachable and the node serves
	// from its cache.
	Degraded bool `json:"degraded"`
}

// Member is one gossip member as this node sees it.
type Member struct {
	Name   string            `json:"name"`
	Region topology.RegionID `json:"region,omitempty"`
	Role   string            `json:"role"`
	State  string            `json:"state"` // alive, suspect, dead, left
	Addr   string            `json:"addr"`
}

// Route is one region's row of the committed routing table.
type Route struct {
	Region     topology.RegionID   `json:"region"`
	State      string              `json:"state"` // active, draining, failed
	Epoch      uint64              `json:"epoch"`
	Since      time.Time           `json:"since"`
	Reason     string              `json:"reason,omitempty"`
	FailoverTo []topology.RegionID `json:"failover_to,omitempty"`
}

// Load is what this node knows of a region's traffic.
type Load struct {
	Region        topology.RegionID `json:"region"`
	Attached      int               `json:"attached"`
	Sessions      int               `json:"sessions"`
	PacketsPerSec float64           `json:"packets_per_sec"`
}

// Rehoming is the progress of moving devices off failed or draining regions.
type Rehoming struct {
	Active    bool    `json:"active"`
	Total     int     `json:"total"`
	Done      int     `json:"done"`
	Failed    int     `json:"failed"`
	Remaining int     `json:"remaining"`
	Rate      float64 `json:"rate_per_sec"`
}

// Action is an operator action on a region.
type Action string

// Operator actions (POST /v1/regions/{region}/{action}).
const (
	Drain     Action = "drain"
	Failover  Action = "failover"
	Restore   Action = "restore"
	Rebalance Action = "rebalance"
)

// ActionResult is the answer to an operator action.
type ActionResult struct {
	Region topology.RegionID `json:"region"`
	Action Action            `json:"action"`
	Epoch  uint64            `json:"epoch"`
	State  string            `json:"state"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
	// Leader names the raft leader when the action must be sent there.
	Leader string `json:"leader,omitempty"`
}

// DrillRequest asks a running lab to run a drill (POST /v1/drill on the
// lab's control address).
type DrillRequest struct {
	// Spec is the drill, e.g. "kill DE at 10s; restore DE at 40s".
	Spec string `json:"spec"`
}

// LabFile is what a running lab writes to the user's state directory so
// that rdvctl finds its API without flags.
type LabFile struct {
	API   string `json:"api"`
	Token string `json:"token"`
	PID   int    `json:"pid"`
	// Control is the lab's own control API (drills), same token.
	Control string `json:"control,omitempty"`
}
