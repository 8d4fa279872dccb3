// Package netns runs the lab federation as separate processes in Linux
// network namespaces: each region's node and the witness in its own
// namespace and process, the visited network (roamsim) and the internet in
// theirs, and a private PostgreSQL as the shared registry in a "registry"
// namespace — all joined by veths to one bridge that lives in a "fabric"
// namespace (so the host's bridge netfilter rules never see lab traffic).
// A veth from the host namespace into the fabric lets the caller reach
// every namespace (operator APIs, PostgreSQL) on the lab subnet.
//
// Faults are real: Kill sends SIGKILL to a node's process, Partition drops
// a node namespace's traffic to and from the other nodes with an nftables
// table inside that namespace, Heal deletes the table.
//
// The node and visited-network processes are the caller's binary re-executed
// (Config.Command) with the path of a JSON Spec as last argument; that
// binary's entry point calls RunChild. Everything the package creates
// (namespaces named "rdvns-*", veths, the bridge, nftables tables, processes,
// the PostgreSQL data directory) is removed by Cluster.Close, also after a
// failed Start. Needs root.
//
// cmd/rendezvous (lab --netns and its hidden child command) and e2e/ import
// it; nothing else may.
package netns
