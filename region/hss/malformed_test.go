package hss

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fiorix/go-diameter/v4/diam"
	"github.com/fiorix/go-diameter/v4/diam/avp"
	"github.com/fiorix/go-diameter/v4/diam/datatype"
	"github.com/fiorix/go-diameter/v4/diam/dict"

	"github.com/rendezvous-core/rendezvous/topology"
)

// rawPeer speaks bytes, so that it can send what no codec would and read
// answers to commands no dictionary knows.
type rawPeer struct {
	t  *testing.T
	nc net.Conn
}

func dialRaw(t *testing.T, addr netip.AddrPort) *rawPeer {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 10, 9)}}
	nc, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawPeer{t: t, nc: nc}
}

func (r *rawPeer) write(b []byte) {
	r.t.Helper()
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *rawPeer) writeMsg(m *diam.Message) {
	r.t.Helper()
	b, err := m.Serialize()
	if err != nil {
		r.t.Fatal(err)
	}
	r.write(b)
}

// rawAnswer is a frame with its top-level AVPs by code.
type rawAnswer struct {
	h    header
	avps map[uint32][]byte
}

func (a rawAnswer) u32(code uint32) uint32 {
	if b := a.avps[code]; len(b) == 4 {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

// failedCode is the code of the AVP inside Failed-AVP.
func (a rawAnswer) failedCode() uint32 {
	if b := a.avps[avp.FailedAVP]; len(b) >= 8 {
		return binary.BigEndian.Uint32(b[:4])
	}
	return 0
}

// read returns the next frame, or ok=false when the HSS closed.
func (r *rawPeer) read() (rawAnswer, bool) {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(hang))
	var hb [hdrLen]byte
	if _, err := io.ReadFull(r.nc, hb[:]); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			r.t.Fatalf("no answer and no close")
		}
		return rawAnswer{}, false
	}
	h := parseHeader(hb[:])
	body := make([]byte, h.Length-hdrLen)
	if _, err := io.ReadFull(r.nc, body); err != nil {
		return rawAnswer{}, false
	}
	a := rawAnswer{h: h, avps: map[uint32][]byte{}}
	for n := 0; n+8 <= len(body); {
		code := binary.BigEndian.Uint32(body[n:])
		l := int(body[n+5])<<16 | int(body[n+6])<<8 | int(body[n+7])
		hl := 8
		if body[n+4]&0x80 != 0 {
			hl = 12
		}
		if l < hl || n+l > len(body) {
			break
		}
		a.avps[code] = body[n+hl : n+l]
		n += (l + 3) &^ 3
	}
	return a, true
}

// expectClosed reads until EOF, allowing nothing else.
func (r *rawPeer) expectClosed() {
	r.t.Helper()
	if a, ok := r.read(); ok {
		r.t.Fatalf("expected close, got command %d", a.h.Code)
	}
}

func (r *rawPeer) handshake(host string) {
	r.t.Helper()
	c := &testMME{host: host, realm: "visited.example"}
	r.writeMsg(c.cer(true))
	a, ok := r.read()
	if !ok || a.u32(avp.ResultCode) != codeSuccess {
		r.t.Fatalf("CER failed: %v %d", ok, a.u32(avp.ResultCode))
	}
}

func rawHeader(version uint8, length uint32, flags uint8, code, app uint32) []byte {
	b := make([]byte, hdrLen)
	b[0] = version
	b[1], b[2], b[3] = byte(length>>16), byte(length>>8), byte(length)
	b[4] = flags
	b[5], b[6], b[7] = byte(code>>16), byte(code>>8), byte(code)
	binary.BigEndian.PutUint32(b[8:], app)
	binary.BigEndian.PutUint32(b[12:], 0x1234)
	binary.BigEndian.PutUint32(b[16:], 0x5678)
	return b
}

func serialize(t *testing.T, m *diam.Message) []byte {
	b, err := m.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// without returns m's bytes with every top-level AVP of code removed.
func without(t *testing.T, m *diam.Message, code uint32) []byte {
	var keep []*diam.AVP
	for _, a := range m.AVP {
		if a.Code != code {
			keep = append(keep, a)
		}
	}
	n := diam.NewMessage(m.Header.CommandCode, m.Header.CommandFlags, m.Header.ApplicationID, 1, 1, dict.Default)
	for _, a := range keep {
		n.AddAVP(a)
	}
	return serialize(t, n)
}

// TestMalformedInputs: a table of broken input, each with the answer the
// node must give and whether it must close; meanwhile another peer keeps
// being served.
func TestMalformedInputs(t *testing.T) {
	st := openStore(t)
	sub, _ := provision(t, st, nil)
	s := startHSS(t, st, func(c *Config) {
		c.Peers = []PeerRule{{Host: "*.visited.example", Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.10.0/24")}}}
	})
	addr := s.Addrs()[0]

	// The bystander: AIRs in a loop for the whole test.
	good := dialMME(t, addr, "good.visited.example")
	var served atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			a, err := good.tryRoundTrip(good.air(sub.IMSI, plmnOf("26201"), 1, nil))
			if err != nil {
				t.Errorf("bystander: %v", err)
				return
			}
			if code, _ := answerResult(a); code != codeSuccess {
				t.Errorf("bystander got %d", code)
				return
			}
			served.Add(1)
		}
	}()

	mme := &testMME{host: "bad.visited.example", realm: "visited.example"}
	air := func() *diam.Message { return mme.air(sub.IMSI, plmnOf("26201"), 1, nil) }
	withAVP := func(m *diam.Message, a *diam.AVP) *diam.Message { m.AddAVP(a); return m }
	overrun := func() []byte {
		b := serialize(t, air())
		// Session-Id is the first AVP: claim 4000 octets.
		b[hdrLen+5], b[hdrLen+6], b[hdrLen+7] = 0, 0x0f, 0xa0
		return b
	}
	wrongApp := func(app uint32) []byte {
		b := serialize(t, air())
		binary.BigEndian.PutUint32(b[8:], app)
		return b
	}
	unknownCmd := func() []byte {
		b := serialize(t, air())
		b[5], b[6], b[7] = 0, 0x03, 0xe7 // 999
		return b
	}
	badPLMN := func() *diam.Message {
		m := mme.newReq(cmdAIR, sub.IMSI)
		m.NewAVP(avp.VisitedPLMNID, fV, vendor3GPP, datatype.OctetString([]byte{0x62, 0xf2}))
		return m
	}
	cases := []struct {
		name      string
		handshake bool
		bytes     func() []byte
		result    uint32 // 0: no answer expected
		eBit      bool
		failed    uint32
		closes    bool
	}{
		{"message before CER", false, func() []byte { return serialize(t, air()) }, 0, false, 0, true},
		{"CER unknown peer", false, func() []byte {
			c := &testMME{host: "evil.elsewhere.example", realm: "elsewhere.example"}
			return serialize(t, c.cer(true))
		}, codeUnknownPeer, true, 0, true},
		{"CER without S6a", false, func() []byte { return serialize(t, mme.cer(false)) }, codeNoCommonApplication, false, 0, true},
		{"CER without Origin-Host", false, func() []byte { return without(t, mme.cer(true), avp.OriginHost) }, codeMissingAVP, false, avp.OriginHost, true},
		{"short header length 12", true, func() []byte { return rawHeader(1, 12, 0xc0, cmdAIR, appS6a) }, codeInvalidMessageLen, false, 0, true},
		{"length not a multiple of 4", true, func() []byte { return append(rawHeader(1, 22, 0xc0, cmdAIR, appS6a), 0, 0) }, codeInvalidMessageLen, false, 0, true},
		{"length 16 MiB", true, func() []byte { return rawHeader(1, 0xfffffc, 0xc0, cmdAIR, appS6a) }, codeInvalidMessageLen, false, 0, true},
		{"version 2", true, func() []byte { return rawHeader(2, 20, 0xc0, cmdAIR, appS6a) }, codeUnsupportedVersion, false, 0, true},
		{"AVP length overrun", true, overrun, codeInvalidAVPLength, false, avp.SessionID, false},
		{"Unsigned32 AVP of 8 octets", true, func() []byte {
			m := air()
			m.AddAVP(diam.NewAVP(avp.OriginStateID, fM, 0, datatype.Unsigned64(7)))
			return serialize(t, m)
		}, codeInvalidAVPLength, false, avp.OriginStateID, false},
		{"wrong application (S13)", true, func() []byte { return wrongApp(16777252) }, codeAppUnsupported, true, 0, false},
		{"wrong application (Gx)", true, func() []byte { return wrongApp(16777238) }, codeAppUnsupported, true, 0, false},
		{"unknown S6a command 999", true, unknownCmd, codeCommandUnsupported, true, 0, false},
		{"IDR sent to the HSS", true, func() []byte { return serialize(t, mme.newReq(cmdIDR, sub.IMSI)) }, codeCommandUnsupported, true, 0, false},
		{"base ASR", true, func() []byte {
			m := diam.NewRequest(274, 0, dict.Default)
			m.NewAVP(avp.SessionID, fM, 0, datatype.UTF8String("x;1"))
			return serialize(t, m)
		}, codeCommandUnsupported, true, 0, false},
		{"missing Session-Id", true, func() []byte { return without(t, air(), avp.SessionID) }, codeMissingAVP, false, avp.SessionID, false},
		{"missing User-Name", true, func() []byte { return without(t, air(), avp.UserName) }, codeMissingAVP, false, avp.UserName, false},
		{"missing Visited-PLMN-Id", true, func() []byte { return without(t, air(), avp.VisitedPLMNID) }, codeMissingAVP, false, avp.VisitedPLMNID, false},
		{"missing RAT-Type", true, func() []byte { return without(t, mme.ulr(sub.IMSI, plmnOf("26201"), 2, 1004), avp.RATType) }, codeMissingAVP, false, avp.RATType, false},
		{"bad Visited-PLMN-Id", true, func() []byte { return serialize(t, badPLMN()) }, codeInvalidAVPValue, false, avp.VisitedPLMNID, false},
		{"bad IMSI", true, func() []byte { return serialize(t, mme.air("00101abc", plmnOf("26201"), 1, nil)) }, codeInvalidAVPValue, false, avp.UserName, false},
		{"bad Re-Synchronization-Info", true, func() []byte {
			return serialize(t, mme.air(sub.IMSI, plmnOf("26201"), 1, []byte{1, 2, 3}))
		}, codeInvalidAVPValue, false, avp.ResynchronizationInfo, false},
		{"answer nobody asked for", true, func() []byte {
			m := air().Answer(codeSuccess)
			return serialize(t, m)
		}, 0, false, 0, false},
		{"AIR with extra unknown AVP", true, func() []byte {
			return serialize(t, withAVP(air(), diam.NewAVP(99999, 0, 0, datatype.OctetString("x"))))
		}, codeSuccess, false, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := dialRaw(t, addr)
			if c.handshake {
				r.handshake("bad.visited.example")
			}
			r.write(c.bytes())
			if c.result != 0 {
				a, ok := r.read()
				if !ok {
					t.Fatalf("closed without answer %d", c.result)
				}
				if got := a.u32(avp.ResultCode); got != c.result {
					t.Fatalf("Result-Code %d, want %d", got, c.result)
				}
				if a.h.request() {
					t.Fatal("answer has the R bit")
				}
				if (a.h.Flags&diam.ErrorFlag != 0) != c.eBit {
					t.Fatalf("E bit %v, want %v", a.h.Flags&diam.ErrorFlag != 0, c.eBit)
				}
				if c.failed != 0 && a.failedCode() != c.failed {
					t.Fatalf("Failed-AVP names %d, want %d", a.failedCode(), c.failed)
				}
				if a.avps[avp.OriginHost] == nil {
					t.Fatal("answer without Origin-Host")
				}
			}
			if c.closes {
				r.expectClosed()
				return
			}
			// Still open and serving.
			r.writeMsg(air())
			a, ok := r.read()
			if !ok || a.u32(avp.ResultCode) != codeSuccess {
				t.Fatalf("connection not serving after the bad input: %v %d", ok, a.u32(avp.ResultCode))
			}
		})
	}
	close(stop)
	wg.Wait()
	if served.Load() == 0 {
		t.Fatal("bystander was not served")
	}
	t.Logf("bystander served %d AIRs meanwhile", served.Load())
}

var _ = topology.JP
