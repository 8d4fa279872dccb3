package gtpc_test

import (
	"net/netip"
	"testing"

	"github.com/rendezvous-core/rendezvous/region/gtpc"
)

// FuzzParseHeader: the header decoder of both versions never panics and
// never claims more octets than it was given.
func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{0x32, 1, 0, 4, 0, 0, 0, 0, 0x12, 0x34, 0, 0})
	f.Add([]byte{0x40, 1, 0, 9, 0, 0, 1, 0, 3, 0, 1, 0, 7})
	f.Add([]byte{0x48, 32, 0, 8, 0, 0, 0, 1, 0, 0, 2, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := gtpc.ParseHeader(b)
		if err == nil && (h.Len > len(b) || h.Len < 8) {
			t.Fatalf("Len %d for %d octets", h.Len, len(b))
		}
	})
}

// FuzzAnswerPCO: the PCO/ePCO answerer (both GTP versions) never panics.
func FuzzAnswerPCO(f *testing.F) {
	f.Add([]byte{0x80, 0x80, 0x21, 0x10, 1, 0, 0, 0x10, 0x81, 6, 0, 0, 0, 0, 0x83, 6, 0, 0, 0, 0, 0, 0x0d, 0}, false)
	f.Add([]byte{0x80, 0, 0x0d, 0, 0, 0, 3, 0, 0}, true)
	dns := []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("2001:db8::53")}
	f.Fuzz(func(t *testing.T, b []byte, ext bool) {
		gtpc.AnswerPCO(b, dns, ext)
	})
}
