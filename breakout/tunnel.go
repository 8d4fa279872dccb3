package breakout

import (
	"net/netip"

	"github.com/rendezvous-core/rendezvous/topology"
)

// TEID is a GTP Tunnel Endpoint Identifier (TS 29.281 §5.1). TEID 0 is
// reserved for signalling without a tunnel (Echo, Error Indication).
type TEID uint32

// Tunnel is one GTP-U bearer as the control plane installs it.
type Tunnel struct {
	// LocalTEID is our TEID: uplink T-PDUs carry it. Unique per node.
	LocalTEID TEID
	// PeerTEID is the SGW's/SGSN's TEID: downlink T-PDUs carry it.
	PeerTEID TEID
	// Peer is the SGW's/SGSN's GTP-U address and port (normally 2152).
	Peer netip.AddrPort
	// UE is the address allocated to the device (downlink lookup key).
	UE netip.Addr
	// IMSI identifies the subscriber, for counters and usage records.
	IMSI topology.IMSI
}

// Counters are the per-tunnel packet and byte counts since install.
type Counters struct {
	PacketsUp, BytesUp     uint64
	PacketsDown, BytesDown uint64
	// Dropped counts packets of this tunnel that were dropped (spoofed
	// source, egress refused, oversize without fragmentation allowed).
	Dropped uint64
}

// Tunnels is how the control plane (region/session) installs and removes
// tunnels in a node's user plane. Implementations are safe for concurrent
// use; Install and Remove may block briefly but never on the data path.
type Tunnels interface {
	// Install adds t, or replaces the tunnel with the same LocalTEID (a
	// Modify Bearer after SGW relocation changes Peer and PeerTEID).
	Install(t Tunnel) error
	// Remove deletes the tunnel with the given local TEID and returns its
	// final counters. Removing an unknown TEID returns ErrUnknownTEID.
	Remove(local TEID) (Counters, error)
	// Counters returns the current counters of a tunnel.
	Counters(local TEID) (Counters, bool)
}
