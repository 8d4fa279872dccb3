// Package breakout is the GTP-U user plane (TS 29.281) of a region node and
// its local egress to the internet: a batched, allocation-free fast path on
// UDP 2152, TEID and UE-address tables, Echo and Error Indication, per-session
// counters, and egress drivers (a Linux TUN device with routes and source NAT).
//
// The control plane installs and removes tunnels through the Tunnels
// interface defined here. region/ and cmd/ import it; it never imports
// region/.
//
// # Tour
//
//   - config.go: Config, one per node; defaults and validation.
//   - breakout.go: New binds the endpoint, opens the egress, starts the
//     workers; Close stops and tears everything down. Breakout implements
//     Tunnels (Install, Remove, Counters) plus Range and Stats.
//   - gtpu.go: the hand-written GTP-U codec (header, extension header chain,
//     Echo Response, Error Indication, End Marker, G-PDU header).
//   - table.go: tunnels by local TEID and by UE address, 64 copy-on-write
//     shards each behind an atomic.Pointer: the data path never locks.
//   - worker.go: per worker, an uplink goroutine (recvmmsg → decode →
//     checks → egress write; replies batched with sendmmsg) and a downlink
//     goroutine (egress read burst → UE lookup → header prepended in place
//     → sendmmsg). mmsg_linux.go: the allocation-free recvmmsg/sendmmsg.
//   - egress.go: the Egress interface; tun_linux.go: the tun driver (TUN
//     device, routes via netlink, nftables table rdv_<Name> for source NAT).
//   - metrics.go: Prometheus counters summed from per-worker atomics.
//
// # Data path checks
//
// A T-PDU is forwarded only if its TEID is installed (else an Error
// Indication, rate-limited node-wide), it comes from the tunnel's peer
// address (else dropped, counted as spoofed_peer) and its inner source is
// the tunnel's UE address (else spoofed_ue). Malformed headers are dropped
// and counted by reason; nothing on the wire can make the package panic.
//
// # MTU
//
// The TUN MTU (Config.MTU, default 1464) is the path MTU minus the outer
// IPv4/UDP/GTP-U headers; the kernel's IP forwarding enforces it on both
// directions: an inner packet larger than the next hop's MTU is fragmented
// when DF is clear and answered with ICMP "fragmentation needed" when DF is
// set (to the UE through the tunnel on the uplink, to the internet host on
// the downlink). Outer datagrams are sent with IP_PMTUDISC_DONT, so an
// oversize one is fragmented, never refused.
//
// # Privileges
//
// The tun driver needs root or CAP_NET_ADMIN (for /dev/net/tun, netlink and
// nftables); without it New returns an error wrapping ErrNeedNetAdmin.
// Config.NetNS puts a node's sockets, TUN device and NAT table in a named
// network namespace; several nodes can run in one process.
package breakout
