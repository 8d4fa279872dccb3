package topology

import (
	"errors"
	"fmt"
)

// ErrBadPLMN is returned when a string or byte form is not a PLMN identity.
var ErrBadPLMN = errors.New("topology: bad PLMN")

// ParsePLMN parses MCC and MNC digits: 5 digits are MCC + 2-digit MNC, 6
// digits are MCC + 3-digit MNC ("26201", "310260"). The length decides,
// as in TS 29.272 string forms; use PLMNFromIMSI to split IMSI digits.
func ParsePLMN(s string) (PLMN, error) {
	if (len(s) != 5 && len(s) != 6) || !allDigits(s) {
		return PLMN{}, fmt.Errorf("%w %q: want 5 or 6 decimal digits (MCC + MNC)", ErrBadPLMN, s)
	}
	return PLMN{MCC: MCC(s[:3]), MNC: s[3:]}, nil
}

// Valid reports whether p has a 3-digit MCC and a 2- or 3-digit MNC, all decimal.
func (p PLMN) Valid() bool {
	return len(p.MCC) == 3 && allDigits(string(p.MCC)) &&
		(len(p.MNC) == 2 || len(p.MNC) == 3) && allDigits(p.MNC)
}

// PLMNFromIMSI returns the home PLMN of an IMSI: its MCC and its 2- or
// 3-digit MNC, the length taken from the E.212 table (see mncLength). It
// returns the zero PLMN if the IMSI is shorter than 6 digits or not decimal.
func PLMNFromIMSI(imsi IMSI) PLMN {
	s := string(imsi)
	if len(s) < 6 || !allDigits(s) {
		return PLMN{}
	}
	n := mncLength(s)
	return PLMN{MCC: MCC(s[:3]), MNC: s[3 : 3+n]}
}

// BCD returns the 3-octet encoding of TS 24.008 §10.5.1.13 (the MCC/MNC
// octets of §10.5.1.3), which TS 29.272 §7.3.9 uses for Visited-PLMN-Id and TS 29.274
// for the Serving Network IE:
//
//	octet 1: MCC digit 2 | MCC digit 1
//	octet 2: MNC digit 3 | MCC digit 3   (MNC digit 3 = 0xF for a 2-digit MNC)
//	octet 3: MNC digit 2 | MNC digit 1
//
// (high nibble | low nibble). So 310/260 → 13 00 62 and 262/01 → 62 F2 10.
// An invalid PLMN encodes as FF FF FF, which PLMNFromBCD rejects.
func (p PLMN) BCD() [3]byte {
	if !p.Valid() {
		return [3]byte{0xFF, 0xFF, 0xFF}
	}
	d := func(c byte) byte { return c - '0' }
	m, n := p.MCC, p.MNC
	mnc3 := byte(0xF)
	if len(n) == 3 {
		mnc3 = d(n[2])
	}
	return [3]byte{
		d(m[1])<<4 | d(m[0]),
		mnc3<<4 | d(m[2]),
		d(n[1])<<4 | d(n[0]),
	}
}

// PLMNFromBCD decodes the 3-octet form of BCD. Every nibble must be a
// decimal digit, except MNC digit 3, which is 0xF for a 2-digit MNC.
func PLMNFromBCD(b []byte) (PLMN, error) {
	if len(b) != 3 {
		return PLMN{}, fmt.Errorf("%w % X: %d octets, want 3", ErrBadPLMN, b, len(b))
	}
	nib := [6]byte{b[0] & 0xF, b[0] >> 4, b[1] & 0xF, b[2] & 0xF, b[2] >> 4, b[1] >> 4}
	var digits [6]byte
	n := 6
	for i, x := range nib {
		if i == 5 && x == 0xF {
			n = 5
			break
		}
		if x > 9 {
			return PLMN{}, fmt.Errorf("%w % X: nibble %X is not a decimal digit", ErrBadPLMN, b, x)
		}
		digits[i] = '0' + x
	}
	s := string(digits[:n])
	return PLMN{MCC: MCC(s[:3]), MNC: s[3:]}, nil
}
