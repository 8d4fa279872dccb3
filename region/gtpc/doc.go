// Package gtpc is the GTP-C endpoint of a node on UDP 2123: one socket per
// address shared by GTPv1-C (TS 29.060) and GTPv2-C (TS 29.274), demuxed by
// the version bits, with a bounded worker pool, reliable delivery (response
// cache for duplicates, T3/N3 retransmission of our requests) and path
// management (Echo, restart counters).
//
// The Endpoint decodes only headers (ParseHeader) and Echo; every other
// request goes to the Handler registered for its version (region/pgw for
// v2, region/ggsn for v1), which decodes it with go-gtp and returns the
// response. Requests of one peer with the same header TEID (or, for TEID 0,
// the same sequence number) are handled by one worker, in order; a
// duplicate (peer, version, sequence, type) gets the cached response again,
// octet for octet (TS 29.274 §7.6, TS 29.060 §7.6). Our restart counter is
// a file in Config.StateDir, incremented by New; a peer's new Recovery
// value (Echo, Create Session, Create PDP Context) makes the handler drop
// the peer's sessions and is reported through Config.OnPeerRestart.
//
// go-gtp is used only to encode and decode (notes/gtp.md): its Conn is not.
// Limits: no GTPv2 piggybacking, no GTPv1 extension headers in GTP-C.
//
// region/pgw, region/ggsn and region/ import it; gtpctest holds interop
// helpers (network namespaces, dumpcap, tshark) for tests only.
package gtpc
