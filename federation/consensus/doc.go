// Package consensus is the federation's routing table and the raft group
// (hashicorp/raft v1.8.0, raft-wal store) that agrees on it: per-region
// state (active, draining, failed), epochs, failover order, the commands
// that change them, and the leader's policy loop that turns membership
// observations into commands.
//
// Every node routes only from the table its FSM has applied (Node.Table,
// Node.Subscribe), never from its own membership view.
//
// Shape (the etcd-io/raft style): Table.Apply is the deterministic state
// transition (compare-and-set on the region's epoch); Policy is the
// synchronous failover policy, fed observations and the current time;
// Node is the goroutine-owning shell that runs raft, steps the policy every
// tick on every node, and proposes the policy's commands only while it
// leads and has passed a Barrier since its election.
//
// Quorum-loss recovery: Recover (RECOVERY.md).
//
// region/ and cmd/ import it.
package consensus
