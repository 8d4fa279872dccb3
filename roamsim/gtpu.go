package roamsim

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
)

// GTP-U (TS 29.281) message types we handle.
const (
	gtpuEchoRequest  = 1
	gtpuEchoResponse = 2
	gtpuErrorInd     = 26
	gtpuGPDU         = 255
)

// probe payload marker, so replies from anything else are not counted.
var probeMagic = [8]byte{'r', 'o', 'a', 'm', 's', 'i', 'm', 0}

// dataHandler receives decapsulated probe replies on the reader goroutine.
type dataHandler interface {
	// probeReply: a reply for the probe seq arrived on our U-TEID teid.
	probeReply(teid uint32, seq uint16)
	// errorIndication: the peer at gsn does not know its tunnel teid (the
	// TEID we sent G-PDUs with), TS 29.281 §7.3.1.
	errorIndication(teid uint32, gsn netip.Addr)
}

// dataPlane is the SGW/SGSN user plane: one UDP socket on the U address, a
// reader goroutine, and an encoder used only by the prober goroutine.
type dataPlane struct {
	conn    *net.UDPConn
	h       dataHandler
	udpPort uint16 // 0 = ICMP echo probes
	buf     [1500]byte

	errInd    atomic.Uint64
	malformed atomic.Uint64
	unknown   atomic.Uint64
}

func newDataPlane(laddr netip.AddrPort, udpPort uint16, h dataHandler) (*dataPlane, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(laddr))
	if err != nil {
		return nil, errors.Join(errors.New("roamsim: gtp-u listen "+laddr.String()), err)
	}
	_ = c.SetReadBuffer(4 << 20)
	return &dataPlane{conn: c, h: h, udpPort: udpPort}, nil
}

func (d *dataPlane) close() error { return d.conn.Close() }

// sendProbe encapsulates one ICMP echo request (or UDP datagram) from ue to
// target in a G-PDU with the peer's TEID. Called only by the prober.
func (d *dataPlane) sendProbe(peer netip.AddrPort, teid uint32, ue, target netip.Addr, id, seq uint16) error {
	n := buildProbe(d.buf[:], teid, ue, target, id, seq, d.udpPort)
	_, err := d.conn.WriteToUDPAddrPort(d.buf[:n], peer)
	return err
}

// buildProbe writes GTP-U(8) + IPv4(20) + ICMP(8)/UDP(8) + payload(16) into
// b and returns the length.
func buildProbe(b []byte, teid uint32, src, dst netip.Addr, id, seq uint16, udpPort uint16) int {
	const payload = 16
	ip := b[8:]
	l4 := ip[20:]
	l4len := 8 + payload
	total := 20 + l4len
	// GTP-U header: version 1, PT 1, no optional fields.
	b[0], b[1] = 0x30, gtpuGPDU
	binary.BigEndian.PutUint16(b[2:4], uint16(total))
	binary.BigEndian.PutUint32(b[4:8], teid)
	// IPv4
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:4], uint16(total))
	binary.BigEndian.PutUint16(ip[4:6], seq) // identification
	ip[6], ip[7] = 0x40, 0                   // DF
	ip[8] = 64
	ip[9] = 1 // ICMP
	if udpPort != 0 {
		ip[9] = 17
	}
	ip[10], ip[11] = 0, 0
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:12], checksum(ip[:20], 0))
	// payload: magic(8) + id(2) + seq(2) + 4 zero
	p := l4[8 : 8+payload]
	copy(p, probeMagic[:])
	binary.BigEndian.PutUint16(p[8:10], id)
	binary.BigEndian.PutUint16(p[10:12], seq)
	p[12], p[13], p[14], p[15] = 0, 0, 0, 0
	if udpPort == 0 {
		l4[0], l4[1] = 8, 0 // echo request
		l4[2], l4[3] = 0, 0
		binary.BigEndian.PutUint16(l4[4:6], id)
		binary.BigEndian.PutUint16(l4[6:8], seq)
		binary.BigEndian.PutUint16(l4[2:4], checksum(l4[:l4len], 0))
	} else {
		binary.BigEndian.PutUint16(l4[0:2], 40000+id%20000) // source port
		binary.BigEndian.PutUint16(l4[2:4], udpPort)
		binary.BigEndian.PutUint16(l4[4:6], uint16(l4len))
		l4[6], l4[7] = 0, 0
		// pseudo-header: src, dst, zero, proto, UDP length
		var ph uint32
		ph += uint32(binary.BigEndian.Uint16(s4[0:2])) + uint32(binary.BigEndian.Uint16(s4[2:4]))
		ph += uint32(binary.BigEndian.Uint16(d4[0:2])) + uint32(binary.BigEndian.Uint16(d4[2:4]))
		ph += 17 + uint32(l4len)
		c := checksum(l4[:l4len], ph)
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[6:8], c)
	}
	return 8 + total
}

// checksum is the Internet checksum (RFC 1071) of b plus a partial sum.
func checksum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// serve reads until the socket is closed; no goroutine per packet.
func (d *dataPlane) serve() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := d.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		d.handle(buf[:n], from)
	}
}

func (d *dataPlane) handle(b []byte, from netip.AddrPort) {
	if len(b) < 8 || b[0]>>5 != 1 || b[0]&0x10 == 0 {
		d.malformed.Add(1)
		return
	}
	teid := binary.BigEndian.Uint32(b[4:8])
	l := int(binary.BigEndian.Uint16(b[2:4]))
	if 8+l > len(b) {
		d.malformed.Add(1)
		return
	}
	body := b[8 : 8+l]
	var seq []byte
	if b[0]&0x07 != 0 { // E, S or PN: 4 more octets
		if len(body) < 4 {
			d.malformed.Add(1)
			return
		}
		seq = body[:2]
		next := body[3]
		body = body[4:]
		for next != 0 && b[0]&0x04 != 0 { // extension headers
			if len(body) < 1 || body[0] == 0 || len(body) < int(body[0])*4 {
				d.malformed.Add(1)
				return
			}
			el := int(body[0]) * 4
			next = body[el-1]
			body = body[el:]
		}
	}
	switch b[1] {
	case gtpuEchoRequest:
		// Echo Response with Recovery 0 (TS 29.281 §7.2.2).
		out := []byte{0x32, gtpuEchoResponse, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 14, 0}
		if seq != nil {
			copy(out[8:10], seq)
		}
		_, _ = d.conn.WriteToUDPAddrPort(out, from)
	case gtpuErrorInd:
		d.errInd.Add(1)
		if teid, gsn, ok := parseErrorIndication(body); ok {
			d.h.errorIndication(teid, gsn)
		} else {
			d.malformed.Add(1)
		}
	case gtpuGPDU:
		id, sq, ok := parseProbeReply(body)
		if !ok {
			d.unknown.Add(1)
			return
		}
		_ = id
		d.h.probeReply(teid, sq)
	}
}

// parseProbeReply recognises an ICMP echo reply or a UDP datagram carrying
// our probe payload and returns its id and sequence.
func parseProbeReply(p []byte) (id, seq uint16, ok bool) {
	if len(p) < 20 || p[0]>>4 != 4 {
		return 0, 0, false
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	if ihl < 20 || total > len(p) || total < ihl+8 {
		return 0, 0, false
	}
	l4 := p[ihl:total]
	switch p[9] {
	case 1:
		if l4[0] != 0 { // echo reply
			return 0, 0, false
		}
		if len(l4) >= 8+12 && [8]byte(l4[8:16]) == probeMagic {
			return binary.BigEndian.Uint16(l4[4:6]), binary.BigEndian.Uint16(l4[6:8]), true
		}
		return 0, 0, false
	case 17:
		pl := l4[8:]
		if len(pl) >= 12 && [8]byte(pl[:8]) == probeMagic {
			return binary.BigEndian.Uint16(pl[8:10]), binary.BigEndian.Uint16(pl[10:12]), true
		}
	}
	return 0, 0, false
}

// parseErrorIndication reads the mandatory IEs of an Error Indication
// (TS 29.281 §7.3.1): Tunnel Endpoint Identifier Data I (type 16, TV, 4
// octets) and GTP-U Peer Address (type 133, TLV, IPv4 or IPv6).
func parseErrorIndication(b []byte) (teid uint32, gsn netip.Addr, ok bool) {
	var haveTEID bool
	for len(b) > 0 {
		switch t := b[0]; {
		case t == 16:
			if len(b) < 5 {
				return 0, gsn, false
			}
			teid, haveTEID = binary.BigEndian.Uint32(b[1:5]), true
			b = b[5:]
		case t == 14: // Recovery (TV, 1)
			if len(b) < 2 {
				return 0, gsn, false
			}
			b = b[2:]
		case t >= 128: // TLV
			if len(b) < 3 {
				return 0, gsn, false
			}
			l := int(binary.BigEndian.Uint16(b[1:3]))
			if len(b) < 3+l {
				return 0, gsn, false
			}
			if t == 133 {
				gsn, _ = netip.AddrFromSlice(b[3 : 3+l])
				gsn = gsn.Unmap()
			}
			b = b[3+l:]
		default:
			return 0, gsn, false // unknown TV IE: length unknown
		}
	}
	return teid, gsn, haveTEID && gsn.IsValid()
}
