package topology

import (
	"errors"
	"fmt"
)

// RegionID names a region of the federation ("JP", "US", "DE", "AU").
type RegionID string

// The four regions of the federation (DESIGN.md §1).
const (
	JP RegionID = "JP"
	US RegionID = "US"
	DE RegionID = "DE"
	AU RegionID = "AU"
)

// IMSI is an International Mobile Subscriber Identity: 6 to 15 decimal
// digits, MCC (3) + MNC (2 or 3) + MSIN (TS 23.003 §2.2).
type IMSI string

// ErrBadIMSI is returned when a string is not a valid IMSI.
var ErrBadIMSI = errors.New("topology: bad IMSI")

// ParseIMSI checks that s is 6 to 15 decimal digits and returns it as an IMSI.
func ParseIMSI(s string) (IMSI, error) {
	if len(s) < 6 || len(s) > 15 {
		return "", fmt.Errorf("%w %q: %d digits, want 6 to 15", ErrBadIMSI, s, len(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return "", fmt.Errorf("%w %q: non-digit at position %d", ErrBadIMSI, s, i+1)
		}
	}
	return IMSI(s), nil
}

// MCC returns the Mobile Country Code: the first three digits.
func (i IMSI) MCC() MCC {
	if len(i) < 3 {
		return ""
	}
	return MCC(i[:3])
}

// MCC is a Mobile Country Code of ITU-T E.212: three decimal digits.
type MCC string

// PLMN is a Public Land Mobile Network identity: MCC and a 2- or 3-digit MNC.
// The zero value is no PLMN.
type PLMN struct {
	MCC MCC
	MNC string
}

// String returns the PLMN as MCC-MNC digits, e.g. "310260" or "26201".
func (p PLMN) String() string { return string(p.MCC) + p.MNC }

// IsZero reports whether p is the zero PLMN.
func (p PLMN) IsZero() bool { return p.MCC == "" && p.MNC == "" }
