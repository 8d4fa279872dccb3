package roamsim

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/wmnsk/milenage"
)

// USIM constants (TS 33.102 Annex C, TS 33.401 §6.1.1).
const (
	indBits = 5            // IND is the 5 low bits of SQN (Annex C.3.2, as the core allocates)
	numIND  = 1 << indBits // 32 entries in the SEQ array
	sqnMask = 1<<48 - 1
	// defaultDelta bounds how far a fresh SEQ may be ahead of the highest
	// accepted SEQ (Annex C.2.1 "Δ"); beyond it the USIM asks for a resync.
	defaultDelta = 1 << 28
)

// Causes of a rejected authentication vector, as a USIM (or the MME for
// RES/XRES) would report them. Wrapped by *VectorError.
var (
	// ErrMACFailure is returned when MAC-A in AUTN does not match XMAC-A
	// (TS 33.102 §6.3.3: "user authentication reject, cause MAC failure").
	ErrMACFailure = errors.New("roamsim: MAC failure (AUTN MAC-A does not verify with the SIM keys)")
	// ErrSyncFailure is returned when SQN is not fresh for its IND; the
	// caller answers with AUTS (resynchronisation).
	ErrSyncFailure = errors.New("roamsim: synch failure (SQN not fresh)")
	// ErrAMFSeparation is returned when the AMF separation bit is 0 in an
	// EPS vector (TS 33.401 §6.1.1).
	ErrAMFSeparation = errors.New("roamsim: AMF separation bit not set in an EPS vector")
	// ErrKASMEMismatch is returned when KASME recomputed with the visited
	// PLMN (TS 33.401 A.2) differs from the vector's.
	ErrKASMEMismatch = errors.New("roamsim: KASME mismatch (not bound to the visited PLMN)")
	// ErrXRESMismatch is returned when RES computed by the SIM differs from
	// the vector's XRES.
	ErrXRESMismatch = errors.New("roamsim: RES does not match XRES")
	// ErrBadVector is returned for vectors with wrong field lengths.
	ErrBadVector = errors.New("roamsim: malformed authentication vector")
)

// SIMKeys are a subscriber's long-term Milenage keys.
type SIMKeys struct {
	Ki  [16]byte
	OPc [16]byte
}

// Vector is an E-UTRAN authentication vector as received in an AIA.
type Vector struct {
	RAND  []byte // 16
	XRES  []byte // 4..16
	AUTN  []byte // 16
	KASME []byte // 32
}

// USIM is the sequence-number state of one SIM (TS 33.102 Annex C.2): the
// array of accepted SEQ per IND. It is a pure state machine; not safe for
// concurrent use (each device owns its USIM).
type USIM struct {
	Keys SIMKeys
	// Delta is the Annex C Δ; 0 means 2^28.
	Delta uint64

	seq [numIND]uint64 // SEQ_MS per IND (43 bits)
	// highest is the highest accepted SQN (SEQ||IND); its SEQ is SEQ_MS.
	highest uint64
	any     bool
}

// NewUSIM returns a fresh USIM with an empty SEQ array.
func NewUSIM(k SIMKeys) *USIM { return &USIM{Keys: k} }

// SQNMS returns the highest accepted SQN (48 bits), as sent in AUTS.
func (u *USIM) SQNMS() uint64 { return u.highest }

// SetSQNMS seeds the USIM as if it had accepted sqn (useful to force a
// resynchronisation in tests and drills).
func (u *USIM) SetSQNMS(sqn uint64) {
	sqn &= sqnMask
	u.seq[sqn&(numIND-1)] = sqn >> indBits
	u.highest, u.any = sqn, true
}

// AuthResult is what a successful verification yields.
type AuthResult struct {
	SQN   uint64
	RES   []byte
	CK    []byte
	IK    []byte
	KASME []byte
}

// VectorError is a rejected vector with its cause (one of the Err* above)
// and, for ErrSyncFailure, the AUTS the SIM sends back.
type VectorError struct {
	Cause error
	// AUTS is set (14 octets) for ErrSyncFailure: SQN_MS ⊕ AK* ‖ MAC-S.
	AUTS   []byte
	Detail string
}

func (e *VectorError) Error() string {
	if e.Detail == "" {
		return e.Cause.Error()
	}
	return e.Cause.Error() + ": " + e.Detail
}

func (e *VectorError) Unwrap() error { return e.Cause }

// Verify checks v as a USIM plus MME would for the serving network snID (the
// 3-octet PLMN, TS 24.008): MAC-A, the AMF separation bit, SQN freshness for
// its IND (accepting it updates the SEQ array), RES = XRES and KASME
// (TS 33.401 A.2). On SQN failure it returns a *VectorError with AUTS.
func (u *USIM) Verify(v Vector, snID [3]byte) (AuthResult, error) {
	if len(v.RAND) != 16 || len(v.AUTN) != 16 || len(v.KASME) != 32 || len(v.XRES) < 4 || len(v.XRES) > 16 {
		return AuthResult{}, &VectorError{Cause: ErrBadVector, Detail: fmt.Sprintf("RAND %d, AUTN %d, KASME %d, XRES %d octets",
			len(v.RAND), len(v.AUTN), len(v.KASME), len(v.XRES))}
	}
	m := milenage.NewWithOPc(u.Keys.Ki[:], u.Keys.OPc[:], v.RAND, 0, 0)
	res, ck, ik, ak, err := m.F2345()
	if err != nil {
		return AuthResult{}, fmt.Errorf("roamsim: milenage f2345: %w", err)
	}
	sqnB := xor6(v.AUTN[0:6], ak)
	amf := v.AUTN[6:8]
	m.SQN = sqnB
	m.AMF = append([]byte(nil), amf...)
	xmac, err := m.F1()
	if err != nil {
		return AuthResult{}, fmt.Errorf("roamsim: milenage f1: %w", err)
	}
	if subtle.ConstantTimeCompare(xmac, v.AUTN[8:16]) != 1 {
		return AuthResult{}, &VectorError{Cause: ErrMACFailure, Detail: fmt.Sprintf("XMAC-A %x, AUTN MAC-A %x", xmac, v.AUTN[8:16])}
	}
	if amf[0]&0x80 == 0 {
		return AuthResult{}, &VectorError{Cause: ErrAMFSeparation, Detail: fmt.Sprintf("AMF %x", amf)}
	}
	sqn := be48(sqnB)
	if ok, why := u.fresh(sqn); !ok {
		auts, err := u.AUTS(v.RAND)
		if err != nil {
			return AuthResult{}, err
		}
		return AuthResult{}, &VectorError{Cause: ErrSyncFailure, AUTS: auts, Detail: why}
	}
	if len(v.XRES) > len(res) || subtle.ConstantTimeCompare(res[:len(v.XRES)], v.XRES) != 1 {
		return AuthResult{}, &VectorError{Cause: ErrXRESMismatch, Detail: fmt.Sprintf("RES %x, XRES %x", res, v.XRES)}
	}
	kasme := KASME(ck, ik, snID, v.AUTN[0:6])
	if !hmac.Equal(kasme, v.KASME) {
		return AuthResult{}, &VectorError{Cause: ErrKASMEMismatch, Detail: fmt.Sprintf("SN-id %x: computed %x, vector %x", snID, kasme, v.KASME)}
	}
	u.accept(sqn)
	return AuthResult{SQN: sqn, RES: res, CK: ck, IK: ik, KASME: kasme}, nil
}

// fresh applies TS 33.102 Annex C.2.2: SEQ > SEQ_MS[IND] and SEQ − SEQ_MS ≤ Δ.
func (u *USIM) fresh(sqn uint64) (bool, string) {
	seq, ind := sqn>>indBits, sqn&(numIND-1)
	if seq <= u.seq[ind] {
		return false, fmt.Sprintf("SQN %#x: SEQ %d not above SEQ_MS[%d] = %d", sqn, seq, ind, u.seq[ind])
	}
	delta := u.Delta
	if delta == 0 {
		delta = defaultDelta
	}
	if hi := u.highest >> indBits; seq > hi && seq-hi > delta {
		return false, fmt.Sprintf("SQN %#x: SEQ %d more than Δ=%d ahead of SEQ_MS %d", sqn, seq, delta, hi)
	}
	return true, ""
}

func (u *USIM) accept(sqn uint64) {
	seq, ind := sqn>>indBits, sqn&(numIND-1)
	u.seq[ind] = seq
	if !u.any || seq > u.highest>>indBits {
		u.highest = sqn
	}
	u.any = true
}

// AUTS computes the resynchronisation token for rand (TS 33.102 §6.3.3):
// (SQN_MS ⊕ f5*(RAND)) ‖ f1*(SQN_MS, AMF=0000).
func (u *USIM) AUTS(rand []byte) ([]byte, error) {
	m := milenage.NewWithOPc(u.Keys.Ki[:], u.Keys.OPc[:], rand, u.highest, 0)
	auts, err := m.GenerateAUTS()
	if err != nil {
		return nil, fmt.Errorf("roamsim: milenage AUTS: %w", err)
	}
	return auts, nil
}

// RecoverSQNFromAUTS is the HSS side of a resync (TS 33.102 §6.3.5): it
// returns SQN_MS from RAND‖AUTS if MAC-S verifies. Used by tests to check
// that the AUTS this package produces round-trips.
func RecoverSQNFromAUTS(k SIMKeys, rand, auts []byte) (uint64, error) {
	if len(rand) != 16 || len(auts) != 14 {
		return 0, fmt.Errorf("%w: RAND %d, AUTS %d octets", ErrBadVector, len(rand), len(auts))
	}
	m := milenage.NewWithOPc(k.Ki[:], k.OPc[:], rand, 0, 0)
	aks, err := m.F5Star()
	if err != nil {
		return 0, fmt.Errorf("roamsim: milenage f5*: %w", err)
	}
	sqnMS := xor6(auts[:6], aks)
	macS, err := m.F1Star(sqnMS, []byte{0, 0})
	if err != nil {
		return 0, fmt.Errorf("roamsim: milenage f1*: %w", err)
	}
	if !hmac.Equal(macS, auts[6:14]) {
		return 0, fmt.Errorf("%w: MAC-S does not verify", ErrMACFailure)
	}
	return be48(sqnMS), nil
}

// KASME derives K_ASME (TS 33.401 A.2): HMAC-SHA-256(CK‖IK, 0x10 ‖ SN-id ‖
// 0x0003 ‖ SQN⊕AK ‖ 0x0006).
func KASME(ck, ik []byte, snID [3]byte, sqnXorAK []byte) []byte {
	key := make([]byte, 0, 32)
	key = append(append(key, ck...), ik...)
	mac := hmac.New(sha256.New, key)
	s := make([]byte, 0, 14)
	s = append(s, 0x10)
	s = append(s, snID[:]...)
	s = append(s, 0x00, 0x03)
	s = append(s, sqnXorAK...)
	s = append(s, 0x00, 0x06)
	mac.Write(s)
	return mac.Sum(nil)
}

func xor6(a, b []byte) []byte {
	out := make([]byte, 6)
	for i := range out {
		out[i] = a[i] ^ b[i]
	}
	return out
}

func be48(b []byte) uint64 {
	var x [8]byte
	copy(x[2:], b[:6])
	return binary.BigEndian.Uint64(x[:])
}
