package breakout

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/wmnsk/go-gtp/gtpv1/message"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// inner4 is a 28-octet IPv4/UDP packet 10.45.0.2 -> 198.51.100.1.
const inner4 = "4500001c00004000401100000a2d0002c633640104d2000700080000"

func TestDecodeHeaderFixtures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		hex     string
		want    dropReason
		typ     uint8
		teid    TEID
		seq     uint16
		payload int // offset; -1: don't check
	}{
		{"gpdu plain", "30ff001c00001002" + inner4, dropNone, msgGPDU, 0x1002, 0, 8},
		{"gpdu with seq (sgsnemu)", "32ff00200000000101020000" + inner4, dropNone, msgGPDU, 1, 0x0102, 12},
		{"gpdu with PDU session container ext", "34ff00240000000500000085" + "01000900" + inner4, dropNone, msgGPDU, 5, 0, 16},
		{"echo request", "320100040000000000070000", dropNone, msgEchoRequest, 0, 7, 12},
		{"end marker", "30fe000000000abc", dropNone, msgEndMarker, 0xabc, 0, 8},
		{"empty", "", dropShort, 0, 0, 0, -1},
		{"seven octets", "30ff0000000000", dropShort, 0, 0, 0, -1},
		{"version 2", "48200008000000000000000000000000", dropVersion, 0, 0, 0, -1},
		{"version 0", "10ff000000000001", dropVersion, 0, 0, 0, -1},
		{"GTP prime", "20ff000000000001", dropProtocolType, 0, 0, 0, -1},
		{"length past end", "30ff00ff00000001" + inner4, dropLength, 0, 0, 0, -1},
		{"S set, no room for optional fields", "32ff000200000001aaaa", dropLength, 0, 0, 0, -1},
		{"ext length 0", "34ff000800000001000000850000000000", dropExtChain, 0, 0, 0, -1},
		{"ext past end", "34ff000800000001000000850200000000", dropExtChain, 0, 0, 0, -1},
		{"ext chain runs off the message", "34ff000800000001000000200100008500", dropExtChain, 0, 0, 0, -1},
		{"unknown comprehension-required ext", "34ff000800000001000000e101000000", dropExtUnsupported, 0, 0, 0, -1},
		{"unknown optional ext is skipped", "34ff00080000000100000001" + "01abcd00", dropNone, msgGPDU, 1, 0, 16},
		{"trailing octets ignored", "30fe000000000abcdeadbeef", dropNone, msgEndMarker, 0xabc, 0, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := mustHex(t, tc.hex)
			var h header
			got := decodeHeader(b, &h)
			if got != tc.want {
				t.Fatalf("decodeHeader(%s) = %v, want %v", tc.hex, got, tc.want)
			}
			if got != dropNone {
				return
			}
			if h.msgType != tc.typ || h.teid != tc.teid || h.seq != tc.seq {
				t.Errorf("got type %d teid %#x seq %d, want %d %#x %d", h.msgType, h.teid, h.seq, tc.typ, tc.teid, tc.seq)
			}
			if tc.payload >= 0 && h.payload != tc.payload {
				t.Errorf("payload offset %d, want %d", h.payload, tc.payload)
			}
		})
	}
}

// TestDecodeMatchesGoGTP cross-checks the hand decoder against go-gtp's
// codec on packets go-gtp builds, extension headers included.
func TestDecodeMatchesGoGTP(t *testing.T) {
	inner := mustHex(t, inner4)
	msgs := []message.Message{
		message.NewTPDU(0x1234, inner),
		message.NewTPDUWithSequence(0xdeadbeef, 0x4242, inner),
		message.NewTPDUWithExtentionHeader(0x77, inner,
			message.NewExtensionHeader(message.ExtHeaderTypePDUSessionContainer, []byte{0x00, 0x09}, message.ExtHeaderTypeUDPPort),
			message.NewExtensionHeader(message.ExtHeaderTypeUDPPort, []byte{0x08, 0x68}, message.ExtHeaderTypeNoMoreExtensionHeaders)),
		message.NewEchoRequest(99),
	}
	for _, m := range msgs {
		b, err := message.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var h header
		if r := decodeHeader(b, &h); r != dropNone {
			t.Fatalf("%x: %v", b, r)
		}
		parsed, err := message.Parse(b)
		if err != nil {
			t.Fatalf("go-gtp: %v", err)
		}
		if h.msgType != parsed.MessageType() || uint32(h.teid) != parsed.TEID() || h.seq != parsed.Sequence() {
			t.Errorf("%x: ours type %d teid %#x seq %d; go-gtp %d %#x %d", b, h.msgType, h.teid, h.seq,
				parsed.MessageType(), parsed.TEID(), parsed.Sequence())
		}
		if tp, ok := parsed.(*message.TPDU); ok && !bytes.Equal(b[h.payload:h.end], tp.Decapsulate()) {
			t.Errorf("%x: payload %x, go-gtp %x", b, b[h.payload:h.end], tp.Decapsulate())
		}
	}
}

func TestEncodersParseWithGoGTP(t *testing.T) {
	b := make([]byte, 64)
	n := putEchoResponse(b, 0x1234, 0)
	m, err := message.Parse(b[:n])
	if err != nil {
		t.Fatal(err)
	}
	er, ok := m.(*message.EchoResponse)
	if !ok || er.Sequence() != 0x1234 || er.Recovery == nil || er.Recovery.MustRecovery() != 0 {
		t.Fatalf("echo response %x parsed as %#v", b[:n], m)
	}

	n = putErrorIndication(b, 0xcafe, netip.MustParseAddr("127.0.30.1"), 40000)
	m, err = message.Parse(b[:n])
	if err != nil {
		t.Fatalf("%x: %v", b[:n], err)
	}
	ei, ok := m.(*message.ErrorIndication)
	if !ok || ei.TEID() != 0 || ei.TEIDDataI == nil || ei.GTPUPeerAddress == nil {
		t.Fatalf("error indication %x parsed as %#v", b[:n], m)
	}
	if v, _ := ei.TEIDDataI.TEID(); v != 0xcafe {
		t.Errorf("TEID Data I = %#x", v)
	}
	if a, _ := ei.GTPUPeerAddress.GSNAddress(); a != "127.0.30.1" {
		t.Errorf("GTP-U Peer Address = %s", a)
	}
	var h header
	if r := decodeHeader(b[:n], &h); r != dropNone || h.msgType != msgErrorIndication {
		t.Fatalf("own decode of error indication: %v", r)
	}
	if teid, ok := errorIndicationTEID(b[h.payload:h.end]); !ok || teid != 0xcafe {
		t.Errorf("errorIndicationTEID = %#x %v", teid, ok)
	}

	n = putEndMarker(b, 0xabcdef)
	m, err = message.Parse(b[:n])
	if err != nil || m.MessageType() != message.MsgTypeEndMarker || m.TEID() != 0xabcdef {
		t.Fatalf("end marker %x: %v %v", b[:n], m, err)
	}

	putGPDUHeader(b, 0x99, 28)
	copy(b[8:], mustHex(t, inner4))
	m, err = message.Parse(b[:36])
	if err != nil || m.MessageType() != message.MsgTypeTPDU || m.TEID() != 0x99 {
		t.Fatalf("G-PDU %x: %v %v", b[:36], m, err)
	}
}

func TestInnerAddrs(t *testing.T) {
	src, dst, ok := innerAddrs(mustHex(t, inner4))
	if !ok || src != netip.MustParseAddr("10.45.0.2") || dst != netip.MustParseAddr("198.51.100.1") {
		t.Fatalf("got %v %v %v", src, dst, ok)
	}
	for _, bad := range []string{"", "45", "4500ffff" + inner4[8:], "6000"} {
		if _, _, ok := innerAddrs(mustHex(t, bad)); ok {
			t.Errorf("innerAddrs(%s) ok", bad)
		}
	}
}

func TestInnerAddrsIPv6(t *testing.T) {
	p := make([]byte, 48)
	p[0] = 0x60
	p[5] = 8 // payload length
	src, dst := netip.MustParseAddr("2001:db8:45::2"), netip.MustParseAddr("2001:db8:100::1")
	s16, d16 := src.As16(), dst.As16()
	copy(p[8:24], s16[:])
	copy(p[24:40], d16[:])
	gs, gd, ok := innerAddrs(p)
	if !ok || gs != src || gd != dst {
		t.Fatalf("got %v %v %v", gs, gd, ok)
	}
	if d, ok := innerDst(p); !ok || d != dst {
		t.Fatalf("innerDst %v %v", d, ok)
	}
	p[5] = 9 // payload length past the end
	if _, _, ok := innerAddrs(p); ok {
		t.Fatal("accepted a truncated IPv6 packet")
	}
}

func TestSockaddrRoundTrip(t *testing.T) {
	for _, s := range []string{"127.0.30.1:2152", "[2001:db8::1]:2152"} {
		ap := netip.MustParseAddrPort(s)
		sa := makeSockaddr(ap)
		if got := sa.addrPort(); got != ap {
			t.Errorf("%v -> %v", ap, got)
		}
	}
}

// FuzzDecodeHeader: the decoder never panics, and what it accepts has a
// consistent layout (and a consistent TEID Data I walk for Error Indications).
func FuzzDecodeHeader(f *testing.F) {
	for _, s := range []string{
		"30ff001c00001002" + inner4,
		"34ff000800000001000000850100000000",
		"34ff002000000001000000850100000040010868" + "00" + inner4[:22],
		"320100040000000000070000",
		"321a000c000000000000000010000000018500",
		"", "30", "30ff00ff00000001",
	} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var h header
		if decodeHeader(b, &h) != dropNone {
			return
		}
		if h.payload < gtpuHeaderLen || h.payload > h.end || h.end > len(b) {
			t.Fatalf("%x: payload %d end %d len %d", b, h.payload, h.end, len(b))
		}
		inner := b[h.payload:h.end]
		innerAddrs(inner)
		innerDst(inner)
		errorIndicationTEID(inner)
	})
}
