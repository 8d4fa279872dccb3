package gtpc_test

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/rendezvous-core/rendezvous/region/gtpc"
)

func TestAnswerPCO(t *testing.T) {
	dns := []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("192.0.2.54"), netip.MustParseAddr("2001:db8::53")}
	// IPCP Configure-Request for primary+secondary DNS, 000DH and 0003H.
	req := []byte{0x80,
		0x80, 0x21, 16, 1, 7, 0, 16, 129, 6, 0, 0, 0, 0, 131, 6, 0, 0, 0, 0,
		0x00, 0x0d, 0,
		0x00, 0x03, 0}
	want := []byte{0x80,
		0x80, 0x21, 16, 3, 7, 0, 16, 129, 6, 192, 0, 2, 53, 131, 6, 192, 0, 2, 54,
		0x00, 0x0d, 4, 192, 0, 2, 53,
		0x00, 0x0d, 4, 192, 0, 2, 54,
		0x00, 0x03, 16, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53}
	if got := gtpc.AnswerPCO(req, dns, false); !bytes.Equal(got, want) {
		t.Errorf("PCO\n got % x\nwant % x", got, want)
	}
	// ePCO: two-octet lengths (TS 24.301 §9.9.4.26).
	ereq := []byte{0x80, 0x00, 0x0d, 0, 0}
	ewant := []byte{0x80, 0x00, 0x0d, 0, 4, 192, 0, 2, 53, 0x00, 0x0d, 0, 4, 192, 0, 2, 54}
	if got := gtpc.AnswerPCO(ereq, dns, true); !bytes.Equal(got, ewant) {
		t.Errorf("ePCO\n got % x\nwant % x", got, ewant)
	}
	for _, bad := range [][]byte{nil, {0x00}, {0x80, 0x00, 0x0d}, {0x80, 0x00, 0x0d, 9, 1}, {0x80, 0x80, 0x21, 4, 1, 0, 0, 99}} {
		if got := gtpc.AnswerPCO(bad, dns, false); got != nil {
			t.Errorf("AnswerPCO(% x) = % x, want nil", bad, got)
		}
	}
}
