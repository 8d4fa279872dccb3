// Package steering is the pure decision of which region serves a device:
// (visited PLMN, committed routing table, measured RTT matrix, policy) →
// region plus the reasons. Every node decides the same from the same
// committed state.
//
// It does no I/O, reads no clock and imports only topology and the standard
// library. region/ (the HSS, the DNS resolver) and federation/consensus
// import it.
package steering
