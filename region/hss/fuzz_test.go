package hss

import (
	"testing"

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
