// Package lab runs the whole federation on one machine: the four regions
// and the witness as in-process nodes on the fixed lab addresses of
// DESIGN.md §5, a shared registry, generated or given subscribers, an
// "internet" network namespace behind the breakouts, roaming devices from
// roamsim, a live status table, drills and a report.
//
// cmd/rendezvous (the lab subcommand) and e2e/ import it; nothing else may.
package lab
