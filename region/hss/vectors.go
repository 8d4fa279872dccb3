package hss

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/wmnsk/milenage"

	"github.com/rendezvous-core/rendezvous/federation/registry"
)

// amfSeparation is the AMF "separation bit" (bit 0, the MSB) that marks an
// EPS authentication vector (TS 33.401 §6.1.1, TS 33.102 Annex H).
const amfSeparation = 0x8000

// eutranVector is one E-UTRAN authentication vector (TS 33.401 §6.1.1;
// TS 29.272 §7.3.18).
type eutranVector struct {
	RAND  [16]byte
	XRES  []byte // 8 octets with Milenage (f2)
	AUTN  [16]byte
	KASME [32]byte
}

// utranVector is one UMTS quintuplet (TS 33.102 §6.3.2; TS 29.272 §7.3.19).
type utranVector struct {
	RAND   [16]byte
	XRES   []byte
	AUTN   [16]byte
	CK, IK [16]byte
}

func amfOf(a registry.AuthData) uint16 { return uint16(a.AMF[0])<<8 | uint16(a.AMF[1]) }

// milenageFor runs f1..f5 for one vector. The struct is not safe for
// concurrent use, so each vector gets its own (notes/diameter.md §4).
func milenageFor(a registry.AuthData, rnd []byte, sqn uint64, amf uint16) (autn, res, ck, ik []byte, err error) {
	m := milenage.NewWithOPc(a.Ki[:], a.OPc[:], rnd, sqn&(1<<48-1), amf)
	// GenerateAUTN reads the MACA and AK fields: F1 and F2345 first.
	if _, err = m.F1(); err != nil {
		return nil, nil, nil, nil, err
	}
	if res, ck, ik, _, err = m.F2345(); err != nil {
		return nil, nil, nil, nil, err
	}
	if autn, err = m.GenerateAUTN(); err != nil {
		return nil, nil, nil, nil, err
	}
	return autn, res, ck, ik, nil
}

// newEUTRANVector builds one EPS vector for sqn, bound to the serving
// network snID (the AIR's Visited-PLMN-Id octets).
func newEUTRANVector(a registry.AuthData, sqn uint64, snID []byte) (eutranVector, error) {
	var v eutranVector
	if _, err := rand.Read(v.RAND[:]); err != nil {
		return v, fmt.Errorf("hss: random: %w", err)
	}
	autn, res, ck, ik, err := milenageFor(a, v.RAND[:], sqn, amfOf(a)|amfSeparation)
	if err != nil {
		return v, fmt.Errorf("hss: milenage: %w", err)
	}
	copy(v.AUTN[:], autn)
	v.XRES = res
	copy(v.KASME[:], kasme(ck, ik, snID, autn[:6]))
	return v, nil
}

// newUTRANVector builds one quintuplet for sqn; the AMF separation bit is
// clear for non-EPS vectors (TS 33.401 §6.1.1).
func newUTRANVector(a registry.AuthData, sqn uint64) (utranVector, error) {
	var v utranVector
	if _, err := rand.Read(v.RAND[:]); err != nil {
		return v, fmt.Errorf("hss: random: %w", err)
	}
	autn, res, ck, ik, err := milenageFor(a, v.RAND[:], sqn, amfOf(a)&^amfSeparation)
	if err != nil {
		return v, fmt.Errorf("hss: milenage: %w", err)
	}
	copy(v.AUTN[:], autn)
	v.XRES = res
	copy(v.CK[:], ck)
	copy(v.IK[:], ik)
	return v, nil
}

// kasme derives K_ASME (TS 33.401 Annex A.2): KDF = HMAC-SHA-256 keyed with
// CK‖IK over S = FC(0x10) ‖ SN id ‖ L0 (0x0003) ‖ SQN⊕AK ‖ L1 (0x0006).
func kasme(ck, ik, snID, sqnXorAK []byte) []byte {
	key := make([]byte, 0, 32)
	key = append(append(key, ck...), ik...)
	s := make([]byte, 0, 14)
	s = append(s, 0x10)
	s = append(s, snID...)
	s = append(s, 0x00, 0x03)
	s = append(s, sqnXorAK...)
	s = append(s, 0x00, 0x06)
	mac := hmac.New(sha256.New, key)
	mac.Write(s)
	return mac.Sum(nil)
}

var errBadAUTS = errors.New("hss: AUTS verification failed")

// verifyAUTS checks Re-Synchronization-Info = RAND(16) ‖ AUTS(14) and
// returns SQN_MS (TS 33.102 §6.3.3, §6.3.5): AUTS = SQN_MS⊕AK* ‖ MAC-S with
// AK* = f5*(RAND) and MAC-S = f1*(SQN_MS, AMF = 0x0000).
func verifyAUTS(a registry.AuthData, rs []byte) (uint64, error) {
	if len(rs) != 30 {
		return 0, fmt.Errorf("%w: %d octets, want 30", errBadAUTS, len(rs))
	}
	m := milenage.NewWithOPc(a.Ki[:], a.OPc[:], rs[:16], 0, 0)
	aks, err := m.F5Star()
	if err != nil {
		return 0, fmt.Errorf("hss: milenage: %w", err)
	}
	sqnMS := make([]byte, 6)
	for i := range sqnMS {
		sqnMS[i] = rs[16+i] ^ aks[i]
	}
	macS, err := m.F1Star(sqnMS, []byte{0, 0})
	if err != nil {
		return 0, fmt.Errorf("hss: milenage: %w", err)
	}
	if !hmac.Equal(macS, rs[22:30]) {
		return 0, errBadAUTS
	}
	var sqn uint64
	for _, b := range sqnMS {
		sqn = sqn<<8 | uint64(b)
	}
	return sqn, nil
}
