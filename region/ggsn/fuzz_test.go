package ggsn_test

import (
	"net/netip"
	"os"
	"testing"

	"github.com/rendezvous-core/rendezvous/region/gtpc"
	"github.com/wmnsk/go-gtp/gtpv1/ie"
	"github.com/wmnsk/go-gtp/gtpv1/message"
)

// FuzzGGSN feeds arbitrary datagrams through the GTPv1-C decode path of
// the GGSN (header, go-gtp decode, IE walk, the procedures): no panics,
// and every response encodes.
func FuzzGGSN(f *testing.F) {
	h := newHarnessPort(f, uint16(20000+os.Getpid()%40000))
	f.Add(h.cpdp("901700000000001", "internet", 0x100))
	f.Add(h.cpdp("901700000000002", "internet", 0x100, ie.QoSProfile))
	upd, _ := message.Marshal(message.NewUpdatePDPContextRequest(0x22000001, 7, ie.NewTEIDDataI(0x201),
		ie.NewTEIDCPlane(0x200), ie.NewNSAPI(5), ie.NewGSNAddress("127.0.0.1"), ie.NewGSNAddress("127.0.0.2"),
		ie.NewQoSProfile([]byte{0x0b, 0x92, 0x1f})))
	f.Add(upd)
	del, _ := message.Marshal(message.NewDeletePDPContextRequest(0x22000001, 8, ie.NewTeardownInd(true), ie.NewNSAPI(5)))
	f.Add(del)
	f.Add([]byte{0x32, 16, 0, 6, 0, 0, 0, 0, 0, 9, 0, 0, 2, 0x09})
	peer := netip.AddrPortFrom(h.sgsnA, gtpc.Port)
	local := netip.AddrPortFrom(h.ggsnA, gtpc.Port)
	f.Fuzz(func(t *testing.T, b []byte) {
		hd, err := gtpc.ParseHeader(b)
		if err != nil || hd.Version != gtpc.V1 {
			return
		}
		resp, err := h.g.HandleRequest(&gtpc.Request{Header: hd, Raw: b[:hd.Len], Peer: peer, Local: local})
		if err != nil || resp == nil {
			return
		}
		if err := resp.MarshalTo(make([]byte, resp.MarshalLen())); err != nil {
			t.Fatalf("response does not encode: %v", err)
		}
	})
}
