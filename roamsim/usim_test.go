package roamsim

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/wmnsk/milenage"

	"github.com/rendezvous-core/rendezvous/topology"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TS 35.208 test set 1.
const (
	ts1K    = "465b5ce8b199b49faa5f0a2ee238a6bc"
	ts1RAND = "23553cbe9637a89d218ae64dae47bf35"
	ts1SQN  = 0xff9bb4d0b607
	ts1AMF  = 0xb9b9
	ts1OPc  = "cd63cb71954a9f4e48a5994e37a02baf"
	ts1AUTN = "55f328b43577b9b94a9ffac354dfafb3"
	ts1RES  = "a54211d5e3ba50bf"
	ts1CK   = "b40ba9a3c58b2a05bbf0d987b21bf8cb"
	ts1IK   = "f769bcd751044604127672711c6d3441"
)

func ts1Keys(t testing.TB) SIMKeys {
	var k SIMKeys
	copy(k.Ki[:], unhex(t, ts1K))
	copy(k.OPc[:], unhex(t, ts1OPc))
	return k
}

// hssVector builds a vector the way an HSS does (notes/diameter.md §7 B).
func hssVector(t *testing.T, k SIMKeys, rand []byte, sqn uint64, amf uint16, sn [3]byte) Vector {
	t.Helper()
	m := milenage.NewWithOPc(k.Ki[:], k.OPc[:], rand, sqn, amf)
	if _, err := m.F1(); err != nil {
		t.Fatal(err)
	}
	xres, ck, ik, _, err := m.F2345()
	if err != nil {
		t.Fatal(err)
	}
	autn, err := m.GenerateAUTN()
	if err != nil {
		t.Fatal(err)
	}
	return Vector{RAND: rand, XRES: xres, AUTN: autn, KASME: KASME(ck, ik, sn, autn[:6])}
}

func TestVerifyTS35208Set1(t *testing.T) {
	k := ts1Keys(t)
	sn := [3]byte{0x02, 0xf8, 0x39}
	v := hssVector(t, k, unhex(t, ts1RAND), ts1SQN, ts1AMF, sn)
	if got := hex.EncodeToString(v.AUTN); got != ts1AUTN {
		t.Fatalf("AUTN %s, want %s (TS 35.208 set 1)", got, ts1AUTN)
	}
	u := NewUSIM(k)
	u.SetSQNMS(ts1SQN - 32) // the set's SQN is far above a fresh USIM's (Δ)
	res, err := u.Verify(v, sn)
	if err != nil {
		t.Fatalf("verify TS 35.208 set 1: %v", err)
	}
	if hex.EncodeToString(res.RES) != ts1RES || hex.EncodeToString(res.CK) != ts1CK || hex.EncodeToString(res.IK) != ts1IK {
		t.Fatalf("RES/CK/IK = %x/%x/%x", res.RES, res.CK, res.IK)
	}
	if res.SQN != ts1SQN || u.SQNMS() != ts1SQN {
		t.Fatalf("SQN %#x, SQN_MS %#x, want %#x", res.SQN, u.SQNMS(), uint64(ts1SQN))
	}
	// Replaying the same vector is an SQN failure with AUTS.
	_, err = u.Verify(v, sn)
	var ve *VectorError
	if !errors.As(err, &ve) || !errors.Is(err, ErrSyncFailure) || len(ve.AUTS) != 14 {
		t.Fatalf("replay: err %v, want ErrSyncFailure with AUTS", err)
	}
}

// KASME fixture: open5gs unit vector (notes/diameter.md §4).
func TestKASMEFixture(t *testing.T) {
	ck, ik := unhex(t, ts1CK), unhex(t, ts1IK)
	sqn, ak := unhex(t, "fd8eef40df7d"), unhex(t, "aa689c648370")
	sqnXorAK := xor6(sqn, ak)
	p, err := plmnFromBCD(unhex(t, "024830")) // MCC 208, MNC 034
	if err != nil || p != (topology.PLMN{MCC: "208", MNC: "034"}) {
		t.Fatalf("PLMN %v %v", p, err)
	}
	bcd, _ := plmnBCD(p)
	if hex.EncodeToString(bcd[:]) != "024830" {
		t.Fatalf("BCD %x", bcd)
	}
	got := hex.EncodeToString(KASME(ck, ik, bcd, sqnXorAK))
	want := "238e457e0f758badbca8d34bb2612c10428d426757cb5553b2b184fa64bfc549"
	if got != want {
		t.Fatalf("KASME %s, want %s", got, want)
	}
}

func TestVerifyRejects(t *testing.T) {
	k := ts1Keys(t)
	rand := unhex(t, ts1RAND)
	sn := [3]byte{0x62, 0xf2, 0x10} // 262-01
	good := func() Vector { return hssVector(t, k, rand, 0x20|3, 0x8000, sn) }

	cases := []struct {
		name string
		mut  func(*Vector, *USIM)
		want error
	}{
		{"mac", func(v *Vector, _ *USIM) { v.AUTN[15] ^= 1 }, ErrMACFailure},
		{"wrong key", func(_ *Vector, u *USIM) { u.Keys.Ki[0] ^= 1 }, ErrMACFailure},
		{"kasme other plmn", func(v *Vector, _ *USIM) {
			o := hssVector(t, k, rand, 0x20|3, 0x8000, [3]byte{0x44, 0xf0, 0x01})
			v.KASME = o.KASME
		}, ErrKASMEMismatch},
		{"xres", func(v *Vector, _ *USIM) { v.XRES[0] ^= 1 }, ErrXRESMismatch},
		{"short autn", func(v *Vector, _ *USIM) { v.AUTN = v.AUTN[:10] }, ErrBadVector},
		{"stale", func(_ *Vector, u *USIM) { u.SetSQNMS(0x40 | 3) }, ErrSyncFailure},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := good()
			u := NewUSIM(k)
			c.mut(&v, u)
			_, err := u.Verify(v, sn)
			if !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
		})
	}
	// AMF without the separation bit.
	v := hssVector(t, k, rand, 0x20, 0x0000, sn)
	if _, err := NewUSIM(k).Verify(v, sn); !errors.Is(err, ErrAMFSeparation) {
		t.Fatalf("AMF 0000: %v", err)
	}
}

func TestSQNFreshnessPerIND(t *testing.T) {
	k := ts1Keys(t)
	rand := unhex(t, ts1RAND)
	sn := [3]byte{0x62, 0xf2, 0x10}
	u := NewUSIM(k)
	sqn := func(seq, ind uint64) uint64 { return seq<<5 | ind }
	steps := []struct {
		sqn uint64
		ok  bool
	}{
		{sqn(10, 0), true},      // JP slice
		{sqn(5, 8), true},       // US slice: lower SEQ, other IND → fresh
		{sqn(5, 8), false},      // replay
		{sqn(9, 0), false},      // older SEQ in IND 0
		{sqn(11, 0), true},      // next in IND 0
		{sqn(6, 16), true},      // DE slice
		{sqn(1<<30, 24), false}, // beyond Δ
	}
	for i, st := range steps {
		_, err := u.Verify(hssVector(t, k, rand, st.sqn, 0x8000, sn), sn)
		if (err == nil) != st.ok {
			t.Fatalf("step %d SQN %#x: err %v, want ok=%v", i, st.sqn, err, st.ok)
		}
	}
	if u.SQNMS() != sqn(11, 0) {
		t.Fatalf("SQN_MS %#x, want %#x", u.SQNMS(), sqn(11, 0))
	}
}

func TestAUTSRoundTrip(t *testing.T) {
	k := ts1Keys(t)
	rand := unhex(t, ts1RAND)
	u := NewUSIM(k)
	u.SetSQNMS(0x123456789a0 | 7)
	auts, err := u.AUTS(rand)
	if err != nil {
		t.Fatal(err)
	}
	got, err := RecoverSQNFromAUTS(k, rand, auts)
	if err != nil {
		t.Fatal(err)
	}
	if got != u.SQNMS() {
		t.Fatalf("recovered SQN_MS %#x, want %#x", got, u.SQNMS())
	}
	auts[13] ^= 1
	if _, err := RecoverSQNFromAUTS(k, rand, auts); !errors.Is(err, ErrMACFailure) {
		t.Fatalf("tampered AUTS: %v", err)
	}
	// The HSS resyncs to SQN_MS+32; that vector must be accepted.
	sn := [3]byte{0x62, 0xf2, 0x10}
	if _, err := u.Verify(hssVector(t, k, rand, u.SQNMS()+32, 0x8000, sn), sn); err != nil {
		t.Fatalf("vector after resync: %v", err)
	}
}

func TestPLMNBCD(t *testing.T) {
	cases := []struct {
		mcc, mnc, hex string
	}{
		{"262", "01", "62f210"},
		{"310", "260", "130062"},
		{"440", "10", "44f001"},
		{"732", "101", "371201"},
		{"001", "01", "00f110"},
	}
	for _, c := range cases {
		p := topology.PLMN{MCC: topology.MCC(c.mcc), MNC: c.mnc}
		b, err := plmnBCD(p)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(b[:]) != c.hex {
			t.Errorf("%s: %x, want %s", p, b, c.hex)
		}
		back, err := plmnFromBCD(b[:])
		if err != nil || back != p {
			t.Errorf("%s: round trip %v %v", p, back, err)
		}
	}
	for _, bad := range []topology.PLMN{{MCC: "26", MNC: "01"}, {MCC: "262", MNC: "1"}, {MCC: "2a2", MNC: "01"}} {
		if _, err := plmnBCD(bad); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
	if _, err := plmnFromBCD([]byte{0xab, 0xff, 0x10}); err == nil {
		t.Error("non-BCD accepted")
	}
}

func TestSpreadCoversContinents(t *testing.T) {
	cs := DefaultCountries()
	devs, err := Spread(100, cs, Template{IMSIPrefix: "00101", MSISDNPrefix: "4470", APN: "iot", AMF: 0x8000})
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 100 || devs[0].IMSI != "001010000000000" || devs[99].IMSI != "001010000000099" {
		t.Fatalf("IMSIs %s … %s", devs[0].IMSI, devs[len(devs)-1].IMSI)
	}
	countries, continents := map[topology.MCC]bool{}, map[string]bool{}
	for _, d := range devs {
		countries[d.Visited.MCC] = true
		c, ok := CountryByMCC(cs, d.Visited.MCC)
		if !ok {
			t.Fatalf("no country for %v", d.Visited)
		}
		continents[c.Continent] = true
		if _, err := plmnBCD(d.Visited); err != nil {
			t.Fatal(err)
		}
	}
	if len(countries) < 20 || len(continents) < 6 {
		t.Fatalf("%d countries, %d continents", len(countries), len(continents))
	}
}

func TestLoadSubscribersCSV(t *testing.T) {
	in := `imsi,msisdn,ki,opc,amf,apn,home_region
# comment
001010000000001,447000000001,465b5ce8b199b49faa5f0a2ee238a6bc,cd63cb71954a9f4e48a5994e37a02baf,8000,iot.example,de
001010000000002,447000000002,465b5ce8b199b49faa5f0a2ee238a6bc,cd63cb71954a9f4e48a5994e37a02baf,8000,,JP
`
	devs, err := LoadSubscribersCSV(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0].HomeRegion != "DE" || devs[1].APN != "" || devs[0].AMF != 0x8000 ||
		!bytes.Equal(devs[0].Ki[:], unhex(t, ts1K)) {
		t.Fatalf("%+v", devs)
	}
	for _, bad := range []string{
		"00101000000000x,1,465b5ce8b199b49faa5f0a2ee238a6bc,cd63cb71954a9f4e48a5994e37a02baf,8000,a,DE\n",
		"001010000000001,1,465b,cd63cb71954a9f4e48a5994e37a02baf,8000,a,DE\n",
		"001010000000001,1,465b5ce8b199b49faa5f0a2ee238a6bc,cd63cb71954a9f4e48a5994e37a02baf,80,a,DE\n",
		"001010000000001,1,2\n",
	} {
		if _, err := LoadSubscribersCSV(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: err %v", bad, err)
		}
	}
}

func TestProbeChecksumsAndParse(t *testing.T) {
	var b [1500]byte
	src, dst := mustAddr("10.45.0.2"), mustAddr("198.51.100.1")
	for _, port := range []uint16{0, 7} {
		n := buildProbe(b[:], 0x1234, src, dst, 77, 9, port)
		ip := b[8:n]
		if checksum(ip[:20], 0) != 0 {
			t.Fatalf("port %d: IPv4 header checksum does not verify", port)
		}
		if port == 0 && checksum(ip[20:], 0) != 0 {
			t.Fatal("ICMP checksum does not verify")
		}
		// Turn the request into a reply the way the internet would.
		reply := append([]byte(nil), ip...)
		copy(reply[12:16], ip[16:20])
		copy(reply[16:20], ip[12:16])
		if port == 0 {
			reply[20] = 0
		}
		id, seq, ok := parseProbeReply(reply)
		if !ok || id != 77 || seq != 9 {
			t.Fatalf("port %d: parse reply: %d %d %v", port, id, seq, ok)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

type netipAddr = netip.Addr

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestRATTextRoundTrip(t *testing.T) {
	for _, r := range []RAT{RAT4G, RAT3G} {
		b, err := r.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var got RAT
		if err := got.UnmarshalText(b); err != nil || got != r {
			t.Errorf("%v → %q → %v, %v", r, b, got, err)
		}
	}
	var bad RAT
	if err := bad.UnmarshalText([]byte("5G")); err == nil {
		t.Error("5G: want an error")
	}
}
