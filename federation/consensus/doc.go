// Package consensus is the federation's routing table and the raft group
// (hashicorp/raft) that agrees on it: per-region state (active, draining,
// failed), epochs, failover order, the commands that change them, and the
// leader's policy loop that turns membership observations into commands.
//
// Every node routes only from the table its FSM has applied. region/ and cmd/
// import it.
package consensus
