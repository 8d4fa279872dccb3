package pgw_test

import (
	"net/netip"
	"os"
	"testing"

	"github.com/rendezvous-core/rendezvous/region/gtpc"
	"github.com/wmnsk/go-gtp/gtpv2/ie"
	"github.com/wmnsk/go-gtp/gtpv2/message"
)

// FuzzPGW feeds arbitrary datagrams through the GTPv2-C decode path of
// the PGW (header, go-gtp decode, IE checks, the procedures): no panics,
// and every response encodes.
func FuzzPGW(f *testing.F) {
	h := newHarnessPort(f, "10.52.0.0/16", uint16(20000+os.Getpid()%40000))
	f.Add(h.sgw.csr("901700000000001", "internet", 0x10))
	f.Add(h.sgw.csr("901700000000002", "internet", 0x10, without(ie.BearerContext, 0)))
	dsr, _ := message.Marshal(message.NewDeleteSessionRequest(0x11000001, 9, ie.NewEPSBearerID(5)))
	f.Add(dsr)
	mbr, _ := message.Marshal(message.NewModifyBearerRequest(0x11000001, 10, ie.NewBearerContext(ie.NewEPSBearerID(5),
		ie.NewFullyQualifiedTEID(5, 0x4001, "127.0.20.200", "").WithInstance(1))))
	f.Add(mbr)
	f.Add([]byte{0x48, 32, 0, 12, 0, 0, 0, 0, 0, 0, 0x77, 0, 1, 0, 9, 0})
	peer := netip.AddrPortFrom(h.sgw.addr, gtpc.Port)
	local := netip.AddrPortFrom(h.pgwA, gtpc.Port)
	f.Fuzz(func(t *testing.T, b []byte) {
		hd, err := gtpc.ParseHeader(b)
		if err != nil || hd.Version != gtpc.V2 {
			return
		}
		resp, err := h.pgw.HandleRequest(&gtpc.Request{Header: hd, Raw: b[:hd.Len], Peer: peer, Local: local})
		if err != nil || resp == nil {
			return
		}
		if err := resp.MarshalTo(make([]byte, resp.MarshalLen())); err != nil {
			t.Fatalf("response does not encode: %v", err)
		}
	})
}
