// Package topology is the world the federation lives in: the regions (JP, US,
// DE, AU) and their locations, the nodes and addresses of a deployment, UE
// address pools, the ITU-T E.212 MCC → country → location table, PLMN and IMSI
// identities, and the static ranking of regions for a visited PLMN by
// estimated round-trip time.
//
// It is pure: it imports only the standard library (net/netip, never net),
// reads no clock, opens no socket and holds no goroutine. Every other package
// of the module may import it; it imports none of them.
package topology
