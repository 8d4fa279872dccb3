package lab

import "time"

// Report is what a lab run writes with --report.
type Report struct {
	Started  time.Time `json:"started"`
	Duration string    `json:"duration"`
	Final    Snapshot  `json:"final"`
}
