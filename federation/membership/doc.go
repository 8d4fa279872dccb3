// Package membership runs the federation's gossip pool (hashicorp/memberlist)
// for one node: node metadata, the health view of every member, per-peer RTT
// samples aggregated into a region×region matrix, broadcasts (registry cache
// invalidation), and the seed re-join loop memberlist lacks.
//
// Membership only observes; it never decides routing (that is consensus).
// region/ and cmd/ import it.
package membership
