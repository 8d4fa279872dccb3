package pgw_test

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/region/gtpc"
	"github.com/wmnsk/go-gtp/gtpv2"
	"github.com/wmnsk/go-gtp/gtpv2/ie"
	"github.com/wmnsk/go-gtp/gtpv2/message"
)

// BenchmarkPGWCreateDelete is a GTPv2 load driver: 16 SGWs (one UDP socket
// each) run Create Session → Delete Session loops against the PGW over real
// loopback UDP. It reports sessions created and deleted per second.
//
//	go test -run XXX -bench PGWCreateDelete -benchtime 20000x ./region/pgw
func BenchmarkPGWCreateDelete(b *testing.B) {
	h := newHarness(b, "10.64.0.0/12")
	const drivers = 16
	h.subs.AddRange(902000000000000, drivers*1000, 1, "internet")
	var next atomic.Int64
	var wg sync.WaitGroup
	var fails atomic.Int64
	start := time.Now()
	b.ResetTimer()
	for d := range drivers {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(h.sgw.addr, 0)))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 65536)
			to := netip.AddrPortFrom(h.pgwA, gtpc.Port)
			rt := func(req []byte) message.Message {
				for try := 0; try < 3; try++ { // our own T3/N3 as an SGW
					c.WriteToUDPAddrPort(req, to)
					c.SetReadDeadline(time.Now().Add(2 * time.Second))
					n, _, err := c.ReadFromUDPAddrPort(buf)
					if err != nil {
						continue
					}
					m, err := message.Parse(buf[:n])
					if err == nil {
						return m
					}
				}
				return nil
			}
			seq := uint32(1)
			for i := 0; ; i++ {
				if next.Add(1) > int64(b.N) {
					return
				}
				imsi := fmt.Sprintf("%015d", 902000000000000+d*1000+i%1000)
				teid := uint32(d<<20 | i&0xfffff | 1)
				seq++
				req, _ := message.Marshal(message.NewCreateSessionRequest(0, seq,
					ie.NewIMSI(imsi), ie.NewRATType(gtpv2.RATTypeEUTRAN),
					ie.NewFullyQualifiedTEID(gtpv2.IFTypeS5S8SGWGTPC, teid, h.sgw.addr.String(), ""),
					ie.NewAccessPointName("internet"), ie.NewPDNType(gtpv2.PDNTypeIPv4), ie.NewPDNAddressAllocation("0.0.0.0"),
					ie.NewBearerContext(ie.NewEPSBearerID(5),
						ie.NewFullyQualifiedTEID(gtpv2.IFTypeS5S8SGWGTPU, teid, h.sgw.addr.String(), "").WithInstance(2),
						ie.NewBearerQoS(1, 2, 1, 9, 0, 0, 0, 0))))
				m, ok := rt(req).(*message.CreateSessionResponse)
				if !ok || m.PGWS5S8FTEIDC == nil {
					fails.Add(1)
					continue
				}
				pt, _ := m.PGWS5S8FTEIDC.TEID()
				seq++
				req, _ = message.Marshal(message.NewDeleteSessionRequest(pt, seq, ie.NewEPSBearerID(5)))
				if _, ok := rt(req).(*message.DeleteSessionResponse); !ok {
					fails.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(b.N)/el, "sessions/s")
	b.ReportMetric(float64(fails.Load()), "failures")
	if h.tab.Len() != 0 {
		b.Errorf("%d sessions left", h.tab.Len())
	}
}
