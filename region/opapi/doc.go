// Package opapi is a node's operator API: HTTP + JSON behind a bearer token —
// federation status (members, raft leader, routing table, RTT matrix,
// re-homing progress, per-region load) and the operator actions drain,
// failover, restore and rebalance. It also holds the client rdvctl uses.
//
// The server side is wired by region/; cmd/rdvctl and e2e/ import the client.
// It imports only topology and the standard library, so that both ends share
// one definition of every JSON document.
package opapi
