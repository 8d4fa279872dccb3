// Package gtpc is the GTP-C endpoint of a node on UDP 2123: one socket per
// address shared by GTPv1-C (TS 29.060) and GTPv2-C (TS 29.274), demuxed by
// the version bits, with a bounded worker pool, reliable delivery (response
// cache for duplicates, T3/N3 retransmission of our requests) and path
// management (Echo, restart counters).
//
// go-gtp is used only to encode and decode. region/pgw, region/ggsn and
// region/ import it.
package gtpc
