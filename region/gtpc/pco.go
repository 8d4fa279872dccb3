package gtpc

import (
	"encoding/binary"
	"net/netip"
)

// PCO container and protocol ids (TS 24.008 §10.5.6.3, Table 10.5.154).
const (
	pcoIPCP    = 0x8021 // PPP IPCP (RFC 1332, RFC 1877 for DNS)
	pcoDNSv6   = 0x0003 // DNS Server IPv6 Address Request
	pcoDNSv4   = 0x000d // DNS Server IPv4 Address Request
	ipcpNak    = 3
	ipcpDNS1   = 129 // RFC 1877 primary DNS
	ipcpDNS2   = 131 // RFC 1877 secondary DNS
	pcoExtBit  = 0x80
	pcoMaxSize = 251 // a PCO IE's value is at most 253 octets (TS 24.008)
)

// AnswerPCO builds the network-to-MS contents of a Protocol Configuration
// Options IE (TS 24.008 §10.5.6.3; carried as-is in GTPv1 TS 29.060 §7.7.31
// and GTPv2 TS 29.274 §8.13) or, with extended true, of an Extended PCO
// (TS 24.301 §9.9.4.26: two-octet container lengths, TS 29.274 §8.128). It
// answers the DNS requests in req: IPCP Configure-Request options 129/131
// with a Configure-Nak carrying our IPv4 servers, containers 000DH and 0003H
// with one container per IPv4 / IPv6 server. It returns nil when req asks
// for nothing it can answer or is malformed (the PCO is optional).
func AnswerPCO(req []byte, dns []netip.Addr, extended bool) []byte {
	if len(req) < 1 || req[0]&pcoExtBit == 0 {
		return nil
	}
	var v4, v6 []netip.Addr
	for _, a := range dns {
		if a.Is4() || a.Is4In6() {
			v4 = append(v4, a.Unmap())
		} else if a.Is6() {
			v6 = append(v6, a)
		}
	}
	out := []byte{pcoExtBit} // configuration protocol 0: PPP with IP PDP
	add := func(id uint16, contents []byte) {
		n := len(contents)
		if extended {
			out = binary.BigEndian.AppendUint16(out, id)
			out = binary.BigEndian.AppendUint16(out, uint16(n))
		} else {
			out = binary.BigEndian.AppendUint16(out, id)
			out = append(out, byte(n))
		}
		out = append(out, contents...)
	}
	lsize := 1
	if extended {
		lsize = 2
	}
	p := req[1:]
	for len(p) >= 2+lsize {
		id := binary.BigEndian.Uint16(p[0:2])
		var n int
		if extended {
			n = int(binary.BigEndian.Uint16(p[2:4]))
		} else {
			n = int(p[2])
		}
		hdr := 2 + lsize
		if len(p) < hdr+n {
			return nil
		}
		c := p[hdr : hdr+n]
		p = p[hdr+n:]
		switch id {
		case pcoIPCP:
			if nak := ipcpAnswer(c, v4); nak != nil {
				add(pcoIPCP, nak)
			}
		case pcoDNSv4:
			for _, a := range v4 {
				b := a.As4()
				add(pcoDNSv4, b[:])
			}
		case pcoDNSv6:
			for _, a := range v6 {
				b := a.As16()
				add(pcoDNSv6, b[:])
			}
		}
	}
	if len(out) == 1 || (!extended && len(out) > pcoMaxSize) {
		return nil
	}
	return out
}

// ipcpAnswer answers an IPCP Configure-Request (RFC 1332 §3) asking for DNS
// servers (RFC 1877) with a Configure-Nak carrying ours.
func ipcpAnswer(c []byte, v4 []netip.Addr) []byte {
	if len(c) < 4 || c[0] != 1 || len(v4) == 0 {
		return nil
	}
	l := int(binary.BigEndian.Uint16(c[2:4]))
	if l < 4 || l > len(c) {
		return nil
	}
	out := []byte{ipcpNak, c[1], 0, 0}
	for o := c[4:l]; len(o) >= 2; {
		ol := int(o[1])
		if ol < 2 || ol > len(o) {
			return nil
		}
		var a netip.Addr
		switch o[0] {
		case ipcpDNS1:
			a = v4[0]
		case ipcpDNS2:
			a = v4[len(v4)-1]
			if len(v4) > 1 {
				a = v4[1]
			}
		}
		if a.IsValid() {
			b := a.As4()
			out = append(out, o[0], 6)
			out = append(out, b[:]...)
		}
		o = o[ol:]
	}
	if len(out) == 4 {
		return nil
	}
	binary.BigEndian.PutUint16(out[2:4], uint16(len(out)))
	return out
}
