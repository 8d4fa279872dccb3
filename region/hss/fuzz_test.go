package hss

import (
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/fiorix/go-diameter/v4/diam"
)

// FuzzDecode drives the decoding path of every inbound frame: header
// checks, our AVP walk, go-diameter's decoder (which panics on some inputs
// by itself), the raw Session-Id scan, the request parsers and the error
// answer builder. None may panic.
func FuzzDecode(f *testing.F) {
	mme := &testMME{host: "mme.visited.example", realm: "visited.example"}
	seeds := []*diam.Message{
		mme.cer(true),
		mme.air("001010000000001", plmnOf("26201"), 3, nil),
		mme.air("001010000000001", plmnOf("310260"), 1, make([]byte, 30)),
		mme.ulr("001010000000001", plmnOf("44010"), ulrS6aIndicator|ulrInitialAttach, 1004),
		mme.newReq(cmdPUR, "001010000000001"),
	}
	for _, m := range seeds {
		b, err := m.Serialize()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(rawHeader(1, 12, 0xc0, cmdAIR, appS6a))
	f.Add(rawHeader(1, 20, 0x80, cmdDWR, appBase))
	s := &Server{cfg: Config{OriginHost: "hss.example", OriginRealm: "example", MaxVectors: 5}}
	p := &peer{s: s}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= hdrLen {
			h := parseHeader(b)
			if h.checkFraming(1<<16) != 0 {
				if h.request() {
					p.errorAnswer(h, nil, codeInvalidMessageLen, 0)
				}
				return
			}
			if int(h.Length) != len(b) {
				return
			}
			m, err := decode(b)
			var code, failed uint32 = codeSuccess, 0
			if de, ok := err.(*decodeError); ok {
				code, failed = de.Code, de.AVPCode
			}
			if h.request() && err != nil {
				p.errorAnswer(h, b, code, failed)
			}
			if m == nil {
				return
			}
			switch h.Code {
			case cmdAIR:
				q, r, _ := parseAIR(m, 5)
				s.answer(m, q.sid, r).Serialize()
			case cmdULR:
				q, r, _ := parseULR(m)
				s.answer(m, q.sid, r).Serialize()
			default:
				parseCommon(m, true)
			}
		}
	})
}

// TestMutatedStreams feeds 2000 seeded random mutations of valid requests
// (byte changes, truncations), each after a valid CER, to a live node over
// TCP: the real reader, dispatcher, handlers and registry on SQLite. The
// node must neither panic nor hang: it answers or closes every time. (A
// native fuzz target at this level stalls under the fuzzer's coverage
// instrumentation here; FuzzDecode covers the decoding path natively.)
func TestMutatedStreams(t *testing.T) {
	st := openStore(t)
	sub, _ := provision(t, st, nil)
	s := startHSS(t, st, func(c *Config) { c.Logger = nil })
	mme := &testMME{host: "fuzz.visited.example", realm: "visited.example"}
	cer, _ := mme.cer(true).Serialize()
	var seeds [][]byte
	for _, m := range []*diam.Message{
		mme.air(sub.IMSI, plmnOf("26201"), 2, nil),
		mme.air(sub.IMSI, plmnOf("26201"), 1, make([]byte, 30)),
		mme.ulr(sub.IMSI, plmnOf("310260"), ulrS6aIndicator, 1004),
		mme.newReq(cmdPUR, sub.IMSI),
		mme.newReq(cmdNOR, sub.IMSI),
	} {
		b, _ := m.Serialize()
		seeds = append(seeds, b)
	}
	r := rand.New(rand.NewPCG(4, 29272))
	n := 2000
	if testing.Short() {
		n = 200
	}
	for i := 0; i < n; i++ {
		b := append([]byte{}, seeds[r.IntN(len(seeds))]...)
		for k := 0; k < 1+r.IntN(4); k++ {
			b[r.IntN(len(b))] = byte(r.IntN(256))
		}
		if r.IntN(4) == 0 {
			b = b[:r.IntN(len(b))]
		}
		if r.IntN(8) == 0 { // two frames back to back
			b = append(b, seeds[r.IntN(len(seeds))]...)
		}
		nc, err := net.DialTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 10, 9)}, net.TCPAddrFromAddrPort(s.Addrs()[0]))
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(cer)
		nc.Write(b)
		nc.CloseWrite()
		nc.SetReadDeadline(time.Now().Add(hang))
		_, err = io.Copy(io.Discard, nc)
		// Abortive close: no TIME_WAIT piling up on 127.0.10.9.
		nc.SetLinger(0)
		nc.Close()
		if err != nil {
			t.Fatalf("mutation %d: node neither answered nor closed: %v\ninput %x", i, err, b)
		}
	}
	// And it still serves.
	good := dialMME(t, s.Addrs()[0], "good.visited.example")
	expectResult(t, good.roundTrip(good.air(sub.IMSI, plmnOf("26201"), 1, nil)), codeSuccess, false)
}
