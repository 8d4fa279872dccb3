// Package breakout is the GTP-U user plane (TS 29.281) of a region node and
// its local egress to the internet: a batched, allocation-free fast path on
// UDP 2152, TEID and UE-address tables, Echo and Error Indication, per-session
// counters, and egress drivers (a Linux TUN device with routes and source NAT).
//
// The control plane installs and removes tunnels through the Tunnels
// interface defined here. region/ and cmd/ import it; it never imports
// region/.
package breakout
