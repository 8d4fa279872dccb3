package hss

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/wmnsk/milenage"

	"github.com/rendezvous-core/rendezvous/federation/registry"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKASMEKnownAnswer: TS 33.401 A.2 against the reference vector
// (TS 35.208 test set 1 CK/IK, PLMN 024830, SQN fd8eef40df7d, AK
// aa689c648370; notes/diameter.md §4).
func TestKASMEKnownAnswer(t *testing.T) {
	ck := unhex(t, "b40ba9a3c58b2a05bbf0d987b21bf8cb")
	ik := unhex(t, "f769bcd751044604127672711c6d3441")
	sqn := unhex(t, "fd8eef40df7d")
	ak := unhex(t, "aa689c648370")
	x := make([]byte, 6)
	for i := range x {
		x[i] = sqn[i] ^ ak[i]
	}
	got := kasme(ck, ik, unhex(t, "024830"), x)
	want := unhex(t, "238e457e0f758badbca8d34bb2612c10428d426757cb5553b2b184fa64bfc549")
	if !bytes.Equal(got, want) {
		t.Fatalf("KASME %x, want %x", got, want)
	}
}

// TestMilenageTestSet1: the vector path reproduces TS 35.208 test set 1.
func TestMilenageTestSet1(t *testing.T) {
	var a registry.AuthData
	copy(a.Ki[:], unhex(t, "465b5ce8b199b49faa5f0a2ee238a6bc"))
	copy(a.OPc[:], unhex(t, "cd63cb71954a9f4e48a5994e37a02baf"))
	rnd := unhex(t, "23553cbe9637a89d218ae64dae47bf35")
	autn, res, ck, ik, err := milenageFor(a, rnd, 0xff9bb4d0b607, 0xb9b9)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want []byte
	}{
		{"AUTN", autn, unhex(t, "55f328b43577b9b94a9ffac354dfafb3")},
		{"RES", res, unhex(t, "a54211d5e3ba50bf")},
		{"CK", ck, unhex(t, "b40ba9a3c58b2a05bbf0d987b21bf8cb")},
		{"IK", ik, unhex(t, "f769bcd751044604127672711c6d3441")},
	} {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s %x, want %x", c.name, c.got, c.want)
		}
	}
}

// TestAUTSRoundTrip: an AUTS made by a USIM (milenage.GenerateAUTS) yields
// SQN_MS; a flipped bit fails MAC-S.
func TestAUTSRoundTrip(t *testing.T) {
	var a registry.AuthData
	copy(a.Ki[:], unhex(t, "465b5ce8b199b49faa5f0a2ee238a6bc"))
	copy(a.OPc[:], unhex(t, "cd63cb71954a9f4e48a5994e37a02baf"))
	rnd := unhex(t, "23553cbe9637a89d218ae64dae47bf35")
	const sqnMS = 0x00000123_4567 << 5
	m := milenage.NewWithOPc(a.Ki[:], a.OPc[:], rnd, sqnMS, 0)
	auts, err := m.GenerateAUTS()
	if err != nil {
		t.Fatal(err)
	}
	rs := append(append([]byte{}, rnd...), auts...)
	got, err := verifyAUTS(a, rs)
	if err != nil || got != sqnMS {
		t.Fatalf("SQN_MS %x, %v; want %x", got, err, uint64(sqnMS))
	}
	rs[25] ^= 0x40
	if _, err := verifyAUTS(a, rs); err == nil {
		t.Fatal("tampered AUTS accepted")
	}
	if _, err := verifyAUTS(a, rs[:29]); err == nil {
		t.Fatal("short AUTS accepted")
	}
}

// TestTBCD: MSISDN encoding (TS 29.002 §17.7.8).
func TestTBCD(t *testing.T) {
	for in, want := range map[string]string{"12345": "2143f5", "819012345678": "180921436587", "+4915": "9451"} {
		got, err := encodeTBCD(in)
		if err != nil || hex.EncodeToString(got) != want {
			t.Errorf("encodeTBCD(%q) = %x, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "12a4", "1234567890123456"} {
		if _, err := encodeTBCD(bad); err == nil {
			t.Errorf("encodeTBCD(%q) accepted", bad)
		}
	}
}
