package breakout

import (
	"encoding/binary"
	"net/netip"
)

// GTP-U message types, TS 29.281 §6.1 Table 6.1-1.
const (
	msgEchoRequest        = 1
	msgEchoResponse       = 2
	msgErrorIndication    = 26
	msgSupportedExtHdrNtf = 31
	msgEndMarker          = 254
	msgGPDU               = 255
)

// Header flag bits of octet 1, TS 29.281 §5.1 Figure 5.1-1.
const (
	flagsVersionMask = 0xe0
	flagsVersion1    = 0x20 // Version = 1 (GTPv1)
	flagPT           = 0x10 // Protocol Type: 1 = GTP, 0 = GTP'
	flagE            = 0x04 // Extension Header flag
	flagS            = 0x02 // Sequence Number flag
	flagPN           = 0x01 // N-PDU Number flag
)

// Information element types used in GTP-U, TS 29.281 §8.1 Table 8.1-1.
const (
	ieRecovery       = 14
	ieTEIDDataI      = 16
	ieGTPUPeerAddr   = 133
	extUDPPort       = 0x40 // TS 29.281 §5.2.2.1
	gtpuHeaderLen    = 8    // mandatory part, TS 29.281 §5.1
	gtpuOptionalLen  = 4    // Sequence Number, N-PDU Number, Next Extension Header Type
	outerOverheadIP4 = 20 + 8 + gtpuHeaderLen
	outerOverheadIP6 = 40 + 8 + gtpuHeaderLen
)

// dropReason says why a packet was dropped; it indexes the per-worker
// statistics and the dropped-packets metric. Zero means not dropped.
type dropReason uint8

const (
	dropNone           dropReason = iota
	dropShort                     // shorter than the 8-octet mandatory header (§5.1)
	dropVersion                   // version is not 1 (§5.1; GTP-U is GTPv1 only)
	dropProtocolType              // PT = 0, GTP' (§5.1)
	dropLength                    // Length field beyond the datagram, or too short for the optional fields (§5.1)
	dropExtChain                  // extension header with length 0 or past the end (§5.2.1)
	dropExtUnsupported            // unknown extension header whose comprehension is required (§5.2.1)
	dropUnknownType               // message type we do not handle on the user plane (§6.1)
	dropUnknownTEID               // T-PDU or End Marker for a TEID that is not installed (§7.3.1)
	dropSpoofedPeer               // outer source is not the tunnel's peer
	dropSpoofedUE                 // inner source is not the tunnel's UE address
	dropInnerMalformed            // inner packet is not a well-formed IPv4/IPv6 header
	dropEgress                    // the egress refused the packet
	dropNoSession                 // downlink packet to an address with no tunnel
	dropSend                      // sendmmsg refused the datagram
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	dropNone:           "none",
	dropShort:          "short",
	dropVersion:        "version",
	dropProtocolType:   "protocol_type",
	dropLength:         "length",
	dropExtChain:       "extension_chain",
	dropExtUnsupported: "extension_unsupported",
	dropUnknownType:    "unknown_type",
	dropUnknownTEID:    "unknown_teid",
	dropSpoofedPeer:    "spoofed_peer",
	dropSpoofedUE:      "spoofed_ue",
	dropInnerMalformed: "inner_malformed",
	dropEgress:         "egress",
	dropNoSession:      "no_session",
	dropSend:           "send",
}

func (r dropReason) String() string {
	if r < numDropReasons {
		return dropReasonNames[r]
	}
	return "invalid"
}

// header is a decoded GTP-U header. Offsets index the datagram it came from.
type header struct {
	flags   uint8
	msgType uint8
	teid    TEID
	seq     uint16 // valid if flags&flagS
	payload int    // offset of the first octet after the header and extension headers
	end     int    // 8 + Length: offset one past the message (trailing octets are ignored)
}

// decodeHeader decodes the GTP-U header of b by hand (TS 29.281 §5). It never
// panics and never allocates; on a malformed header it returns the reason.
func decodeHeader(b []byte, h *header) dropReason {
	if len(b) < gtpuHeaderLen {
		return dropShort
	}
	f := b[0]
	if f&flagsVersionMask != flagsVersion1 {
		return dropVersion
	}
	if f&flagPT == 0 {
		return dropProtocolType
	}
	h.flags = f
	h.msgType = b[1]
	length := int(binary.BigEndian.Uint16(b[2:4]))
	h.teid = TEID(binary.BigEndian.Uint32(b[4:8]))
	// §5.1: Length is the payload after the mandatory 8 octets, optional
	// fields and extension headers included. Octets after it are ignored.
	h.end = gtpuHeaderLen + length
	if h.end > len(b) {
		return dropLength
	}
	h.payload = gtpuHeaderLen
	h.seq = 0
	if f&(flagE|flagS|flagPN) == 0 {
		return dropNone
	}
	// §5.1: if any of E, S or PN is set, all three optional fields
	// (Sequence Number, N-PDU Number, Next Extension Header Type) are present.
	if length < gtpuOptionalLen {
		return dropLength
	}
	if f&flagS != 0 {
		h.seq = binary.BigEndian.Uint16(b[8:10])
	}
	h.payload = gtpuHeaderLen + gtpuOptionalLen
	if f&flagE == 0 {
		return dropNone
	}
	next := b[11]
	off := h.payload
	for next != 0 {
		// §5.2.1: Extension Header Length is in units of 4 octets and
		// covers the length octet, the content and the next-type octet.
		if off >= h.end {
			return dropExtChain
		}
		n := int(b[off]) * 4
		if n == 0 || off+n > h.end {
			return dropExtChain
		}
		if !extComprehended(next) && next&0x80 != 0 {
			// §5.2.1: bits 8 and 7 = 1x: comprehension required by the
			// receiving endpoint; an unknown one means the PDU is discarded.
			return dropExtUnsupported
		}
		next = b[off+n-1]
		off += n
	}
	h.payload = off
	return dropNone
}

// extComprehended reports whether ext is an extension header type defined in
// TS 29.281 §5.2.1 Figure 5.2.1-3. The breakout needs none of their contents,
// so comprehending one means skipping it.
func extComprehended(ext uint8) bool {
	switch ext {
	case 0x03, // Long PDCP PDU Number
		0x20, // Service Class Indicator
		0x40, // UDP Port
		0x81, // RAN Container
		0x82, // Long PDCP PDU Number
		0x83, // Xw RAN Container
		0x84, // NR RAN Container
		0x85, // PDU Session Container
		0xc0: // PDCP PDU Number
		return true
	}
	return false
}

// putGPDUHeader writes the 8-octet header of a G-PDU carrying n octets to
// teid into b[:8] (TS 29.281 §5.1: no optional fields, S=0 on the downlink
// as §4.3.1 allows).
func putGPDUHeader(b []byte, teid TEID, n int) {
	_ = b[7]
	b[0] = flagsVersion1 | flagPT
	b[1] = msgGPDU
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
	binary.BigEndian.PutUint32(b[4:8], uint32(teid))
}

// putEchoResponse writes an Echo Response to a request with sequence seq
// into b and returns its length (TS 29.281 §7.2.2: TEID 0, S=1 with the
// request's sequence number, Recovery IE). len(b) must be at least 14.
func putEchoResponse(b []byte, seq uint16, recovery uint8) int {
	_ = b[13]
	b[0] = flagsVersion1 | flagPT | flagS
	b[1] = msgEchoResponse
	binary.BigEndian.PutUint16(b[2:4], 4+2)
	binary.BigEndian.PutUint32(b[4:8], 0)
	binary.BigEndian.PutUint16(b[8:10], seq)
	b[10], b[11] = 0, 0
	// §8.2: Recovery; the restart counter is not used in GTP-U and
	// should be zero, but the lab may configure it.
	b[12], b[13] = ieRecovery, recovery
	return 14
}

// putErrorIndication writes an Error Indication for teid into b and returns
// its length (TS 29.281 §7.3.1): TEID 0; S=1 with sequence 0; the UDP Port
// extension header carrying the source port of the triggering G-PDU
// (§5.2.2.1); IEs Tunnel Endpoint Identifier Data I (§8.3) and GTP-U Peer
// Address (§8.4) = our address the G-PDU was sent to. len(b) must be at
// least 44.
func putErrorIndication(b []byte, teid TEID, local netip.Addr, srcPort uint16) int {
	_ = b[43]
	b[0] = flagsVersion1 | flagPT | flagS | flagE
	b[1] = msgErrorIndication
	binary.BigEndian.PutUint32(b[4:8], 0)
	binary.BigEndian.PutUint16(b[8:10], 0)
	b[10] = 0
	b[11] = extUDPPort
	b[12] = 1 // 4 octets
	binary.BigEndian.PutUint16(b[13:15], srcPort)
	b[15] = 0 // no more extension headers
	b[16] = ieTEIDDataI
	binary.BigEndian.PutUint32(b[17:21], uint32(teid))
	b[21] = ieGTPUPeerAddr
	n := 24
	if local.Is4() {
		a := local.As4()
		binary.BigEndian.PutUint16(b[22:24], 4)
		n += copy(b[24:], a[:])
	} else {
		a := local.As16()
		binary.BigEndian.PutUint16(b[22:24], 16)
		n += copy(b[24:], a[:])
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(n-gtpuHeaderLen))
	return n
}

// putEndMarker writes an End Marker for teid into b and returns its length
// (TS 29.281 §7.3.2: no payload, no sequence number).
func putEndMarker(b []byte, teid TEID) int {
	_ = b[7]
	b[0] = flagsVersion1 | flagPT
	b[1] = msgEndMarker
	binary.BigEndian.PutUint16(b[2:4], 0)
	binary.BigEndian.PutUint32(b[4:8], uint32(teid))
	return gtpuHeaderLen
}

// innerAddrs returns the source and destination of an inner IPv4 or IPv6
// packet, or ok=false if p is not a well-formed IP header.
func innerAddrs(p []byte) (src, dst netip.Addr, ok bool) {
	if len(p) < 1 {
		return src, dst, false
	}
	switch p[0] >> 4 {
	case 4:
		if len(p) < 20 || int(p[0]&0x0f)*4 < 20 || int(binary.BigEndian.Uint16(p[2:4])) > len(p) {
			return src, dst, false
		}
		return netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20])), true
	case 6:
		if len(p) < 40 || 40+int(binary.BigEndian.Uint16(p[4:6])) > len(p) {
			return src, dst, false
		}
		return netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40])), true
	}
	return src, dst, false
}

// innerDst returns the destination of an inner IP packet (downlink lookup).
func innerDst(p []byte) (netip.Addr, bool) {
	if len(p) >= 20 && p[0]>>4 == 4 {
		return netip.AddrFrom4([4]byte(p[16:20])), true
	}
	if len(p) >= 40 && p[0]>>4 == 6 {
		return netip.AddrFrom16([16]byte(p[24:40])), true
	}
	return netip.Addr{}, false
}
