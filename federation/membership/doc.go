// Package membership runs the federation's gossip pool (hashicorp/memberlist
// v0.7.0) for one node: node metadata (region, role, addresses, version,
// load, its RTT row), the health view of every member, per-peer RTT samples
// aggregated into a region×region matrix, broadcasts (registry cache
// invalidation by revision), and the seed re-join loop memberlist lacks
// (notes/federation.md §1.8).
//
// Production uses WANProfile, the tuned profile of notes/federation.md
// §1.1; TestProfile is the same shape scaled down for loopback tests.
//
// The health view reports alive, dead and left. memberlist v0.7.0 offers no
// race-free way to observe suspicion (see Members), so suspect is never
// reported; a member is dead once memberlist's Lifeguard suspicion timeout
// expired with its peer confirmations.
//
// Membership only observes; it never decides routing (that is consensus).
// region/, cmd/ and federation/consensus import it. The faultnet
// subpackage wraps its transport (and raft's) for fault-injection tests.
package membership
