// Package federation is the part of Rendezvous that spans regions. It holds
// no code of its own; its subpackages are:
//
//   - config: the federation file (YAML) that describes regions, nodes,
//     addresses, pools and peers, parsed strictly.
//   - membership: gossip (hashicorp/memberlist) — who is alive, and RTTs.
//   - consensus: raft (hashicorp/raft) — the committed routing table.
//   - registry: the global subscriber registry (SQL).
//   - steering: the pure decision of which region serves a device.
//   - rehome: moving devices off failed or draining regions (and back on a
//     rebalance) at a bounded rate, following the committed table.
//
// Federation packages may import topology and each other along the order
// above; they never import region/, breakout/, cmd/ or e2e/.
package federation
