package gtpc

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the GTP version of a control message: the top three bits of
// the first octet (TS 29.060 §6, TS 29.274 §5.1).
type Version uint8

// The two GTP-C versions sharing UDP 2123.
const (
	V1 Version = 1 // GTPv1-C, TS 29.060
	V2 Version = 2 // GTPv2-C, TS 29.274
)

func (v Version) String() string {
	switch v {
	case V1:
		return "v1"
	case V2:
		return "v2"
	}
	return fmt.Sprintf("v%d", uint8(v))
}

// Message types the endpoint itself understands.
const (
	msgEchoRequest        = 1 // both versions: TS 29.060 §7.2.1, TS 29.274 §7.1.1
	msgEchoResponse       = 2
	msgVersionUnsupported = 3
	ieRecoveryV1          = 14 // TS 29.060 §7.7.11, TV, 1 octet value
	ieRecoveryV2          = 3  // TS 29.274 §8.5, TLV
)

// ErrMalformed is returned by ParseHeader when a datagram is not a GTP-C
// message: too short, a length field beyond the datagram, GTP' (PT=0) or an
// unsupported version.
var ErrMalformed = errors.New("gtpc: malformed header")

// Header is the decoded fixed part of a GTP-C message.
type Header struct {
	Version Version
	Type    uint8
	// HasTEID is false for GTPv2 messages without the T flag (Echo, Version
	// Not Supported); GTPv1-C always carries a TEID.
	HasTEID bool
	TEID    uint32
	// Seq is the sequence number: 16 bits in GTPv1 (TS 29.060 §6, S=1 is
	// mandatory for GTP-C), 24 bits in GTPv2 (TS 29.274 §5.5.1).
	Seq uint32
	// Len is the length of the whole message in octets, header included.
	// A datagram may be longer (GTPv2 piggybacking, TS 29.274 §5.5.1 P flag).
	Len int
}

// ParseHeader decodes the header of a GTPv1-C or GTPv2-C message without
// allocating.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < 8 {
		return Header{}, fmt.Errorf("%w: %d octets", ErrMalformed, len(b))
	}
	h := Header{Version: Version(b[0] >> 5), Type: b[1]}
	length := int(binary.BigEndian.Uint16(b[2:4]))
	switch h.Version {
	case V1:
		// TS 29.060 §6: PT=1 is GTP, PT=0 GTP'. For GTP-C the S flag is
		// always set, so the header is 12 octets and Length counts the
		// octets after the first 8.
		if b[0]&0x10 == 0 {
			return Header{}, fmt.Errorf("%w: GTP' (PT=0)", ErrMalformed)
		}
		if b[0]&0x02 == 0 {
			return Header{}, fmt.Errorf("%w: GTPv1-C without sequence number", ErrMalformed)
		}
		h.Len = 8 + length
		if length < 4 || len(b) < h.Len {
			return Header{}, fmt.Errorf("%w: v1 length %d, datagram %d", ErrMalformed, length, len(b))
		}
		h.HasTEID = true
		h.TEID = binary.BigEndian.Uint32(b[4:8])
		h.Seq = uint32(binary.BigEndian.Uint16(b[8:10]))
		return h, nil
	case V2:
		// TS 29.274 §5.1: Length counts the octets after the first 4.
		h.Len = 4 + length
		h.HasTEID = b[0]&0x08 != 0
		min := 8
		if h.HasTEID {
			min = 12
		}
		if h.Len < min || len(b) < h.Len {
			return Header{}, fmt.Errorf("%w: v2 length %d, datagram %d", ErrMalformed, length, len(b))
		}
		off := 4
		if h.HasTEID {
			h.TEID = binary.BigEndian.Uint32(b[4:8])
			off = 8
		}
		h.Seq = uint32(b[off])<<16 | uint32(b[off+1])<<8 | uint32(b[off+2])
		return h, nil
	}
	return Header{}, fmt.Errorf("%w: version %d", ErrMalformed, h.Version)
}

// isResponse reports whether a message type is a response that answers one
// of our requests (TS 29.060 §7.1 Table 1, TS 29.274 §6.1 Table 6.1-1).
func isResponse(v Version, t uint8) bool {
	switch v {
	case V1:
		switch t {
		case 2, 5, 7, 17, 19, 21, 23, 25, 27, 30, 32, 34, 36, 49, 51, 53, 55, 57, 59, 61:
			return true
		}
	case V2:
		switch t {
		case 2, 33, 35, 37, 39, 65, 67, 69, 71, 73, 96, 98, 100, 102, 129, 131, 133, 135, 137,
			139, 141, 143, 145, 147, 149, 151, 153, 155, 160, 162, 164, 166, 168, 170, 172, 174,
			176, 178, 201, 212, 232, 234, 236, 238:
			return true
		}
	}
	return false
}

// recoveryOf returns the Recovery IE value of an Echo message (TS 29.060
// §7.2.1/§7.7.11, TS 29.274 §7.1.1/§8.5); ok is false if absent.
func recoveryOf(v Version, b []byte, h Header) (uint8, bool) {
	switch v {
	case V1:
		// Header of 12 octets, then TV/TLV IEs; Echo has just Recovery (and
		// perhaps a Private Extension).
		p := b[12:h.Len]
		for len(p) >= 2 {
			if p[0] == ieRecoveryV1 {
				return p[1], true
			}
			if p[0] < 128 {
				return 0, false // other TV IEs in Echo are not defined
			}
			if len(p) < 3 {
				return 0, false
			}
			l := int(binary.BigEndian.Uint16(p[1:3]))
			if len(p) < 3+l {
				return 0, false
			}
			p = p[3+l:]
		}
	case V2:
		off := 8
		if h.HasTEID {
			off = 12
		}
		p := b[off:h.Len]
		for len(p) >= 4 {
			l := int(binary.BigEndian.Uint16(p[1:3]))
			if len(p) < 4+l {
				return 0, false
			}
			if p[0] == ieRecoveryV2 && p[3]&0x0f == 0 && l >= 1 {
				return p[4], true
			}
			p = p[4+l:]
		}
	}
	return 0, false
}

// encodeEcho encodes the Echo messages of either version
// with a Recovery IE (TS 29.060 §7.2.1/§7.2.2, TS 29.274 §7.1.1/§7.1.2).
func encodeEcho(v Version, typ uint8, seq uint32, recovery uint8) []byte {
	if v == V1 {
		// A GTPv1 Echo Request carries no Recovery (TS 29.060 §7.2.1).
		b := []byte{0x32, typ, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0}
		if typ == msgEchoResponse {
			b = append(b, ieRecoveryV1, recovery)
			b[3] = 6
		}
		binary.BigEndian.PutUint16(b[8:10], uint16(seq))
		return b
	}
	return []byte{0x40, typ, 0, 9, byte(seq >> 16), byte(seq >> 8), byte(seq), 0,
		ieRecoveryV2, 0, 1, 0, recovery}
}
