package topology

import (
	"bytes"
	"errors"
	"testing"
)

// BCD fixtures of TS 24.008 §10.5.1.13 (figure 10.5.3), both directions.
var bcdFixtures = []struct {
	plmn PLMN
	bcd  [3]byte
}{
	{PLMN{"310", "260"}, [3]byte{0x13, 0x00, 0x62}}, // T-Mobile US, 3-digit MNC
	{PLMN{"262", "01"}, [3]byte{0x62, 0xF2, 0x10}},  // Telekom DE, 2-digit MNC: filler F
	{PLMN{"334", "020"}, [3]byte{0x33, 0x04, 0x20}}, // Telcel MX
	{PLMN{"440", "10"}, [3]byte{0x44, 0xF0, 0x01}},  // NTT docomo JP
	{PLMN{"505", "01"}, [3]byte{0x05, 0xF5, 0x10}},  // Telstra AU
	{PLMN{"001", "01"}, [3]byte{0x00, 0xF1, 0x10}},  // test network
	{PLMN{"999", "999"}, [3]byte{0x99, 0x99, 0x99}},
}

func TestPLMNBCD(t *testing.T) {
	for _, tt := range bcdFixtures {
		t.Run(tt.plmn.String(), func(t *testing.T) {
			if got := tt.plmn.BCD(); got != tt.bcd {
				t.Errorf("%v.BCD() = % X, want % X", tt.plmn, got, tt.bcd)
			}
			got, err := PLMNFromBCD(tt.bcd[:])
			if err != nil || got != tt.plmn {
				t.Errorf("PLMNFromBCD(% X) = %v, %v; want %v", tt.bcd, got, err, tt.plmn)
			}
		})
	}
}

func TestPLMNFromBCDRejects(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"short", []byte{0x62, 0xF2}},
		{"long", []byte{0x62, 0xF2, 0x10, 0x00}},
		{"MCC digit F", []byte{0x6F, 0xF2, 0x10}},
		{"MCC digit 3 = A", []byte{0x62, 0xFA, 0x10}},
		{"MNC digit 1 = F", []byte{0x62, 0xF2, 0x1F}},
		{"MNC digit 2 = B", []byte{0x62, 0xF2, 0xB0}},
		{"MNC digit 3 = C", []byte{0x62, 0xC2, 0x10}},
		{"all F", []byte{0xFF, 0xFF, 0xFF}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := PLMNFromBCD(tt.in)
			if !errors.Is(err, ErrBadPLMN) || !p.IsZero() {
				t.Errorf("PLMNFromBCD(% X) = %v, %v; want ErrBadPLMN", tt.in, p, err)
			}
		})
	}
	if got := (PLMN{}).BCD(); got != [3]byte{0xFF, 0xFF, 0xFF} {
		t.Errorf("zero PLMN BCD = % X", got)
	}
}

func TestParsePLMN(t *testing.T) {
	tests := []struct {
		in      string
		want    PLMN
		wantErr bool
	}{
		{"310260", PLMN{"310", "260"}, false},
		{"26201", PLMN{"262", "01"}, false},
		{"334020", PLMN{"334", "020"}, false},
		{"", PLMN{}, true},
		{"2620", PLMN{}, true},
		{"2620123", PLMN{}, true},
		{"26a01", PLMN{}, true},
		{"262-01", PLMN{}, true},
	}
	for _, tt := range tests {
		got, err := ParsePLMN(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParsePLMN(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !bytes.Contains([]byte(err.Error()), []byte(`"`+tt.in+`"`)) {
			t.Errorf("ParsePLMN(%q) error %q does not quote the input", tt.in, err)
		}
	}
}

func TestPLMNFromIMSI(t *testing.T) {
	tests := []struct {
		imsi IMSI
		want PLMN
	}{
		{"310260123456789", PLMN{"310", "260"}}, // US: 3-digit MNCs
		{"311480123456789", PLMN{"311", "480"}},
		{"302720123456789", PLMN{"302", "720"}}, // Canada
		{"334020123456789", PLMN{"334", "020"}}, // Mexico
		{"722070123456789", PLMN{"722", "070"}}, // Argentina
		{"732101123456789", PLMN{"732", "101"}}, // Colombia
		{"262011234567890", PLMN{"262", "01"}},  // Germany: 2-digit
		{"440101234567890", PLMN{"440", "10"}},  // Japan
		{"505011234567890", PLMN{"505", "01"}},  // Australia
		{"234150123456789", PLMN{"234", "15"}},  // UK
		{"405025123456789", PLMN{"405", "025"}}, // India 405: mixed, 025 is 3-digit
		{"405011234567890", PLMN{"405", "01"}},  // India 405: 01 is 2-digit
		{"404451234567890", PLMN{"404", "45"}},  // India 404: 2-digit
		{"203011234567890", PLMN{"203", "01"}},  // unassigned MCC: 2 digits
		{"90128123456789", PLMN{"901", "28"}},   // shared code: 2 digits
		{"262011", PLMN{"262", "01"}},           // shortest IMSI
		{"26201", PLMN{}},                       // too short
		{"2620112345678x", PLMN{}},              // not decimal
		{"", PLMN{}},
	}
	for _, tt := range tests {
		if got := PLMNFromIMSI(tt.imsi); got != tt.want {
			t.Errorf("PLMNFromIMSI(%s) = %v, want %v", tt.imsi, got, tt.want)
		}
	}
}

func FuzzPLMNFromBCD(f *testing.F) {
	for _, tt := range bcdFixtures {
		f.Add(tt.bcd[:])
	}
	f.Add([]byte{0xFF, 0xFF, 0xFF})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := PLMNFromBCD(b)
		if err != nil {
			if !p.IsZero() {
				t.Fatalf("error %v with PLMN %v", err, p)
			}
			return
		}
		if !p.Valid() {
			t.Fatalf("PLMNFromBCD(% X) = invalid %v", b, p)
		}
		// Decoding then encoding gives the input back: the code is a bijection
		// on valid forms.
		if got := p.BCD(); !bytes.Equal(got[:], b) {
			t.Fatalf("round trip % X → %v → % X", b, p, got)
		}
		if q, err := ParsePLMN(p.String()); err != nil || q != p {
			t.Fatalf("ParsePLMN(%q) = %v, %v", p.String(), q, err)
		}
	})
}

func FuzzParseIMSI(f *testing.F) {
	for _, s := range []string{"310260123456789", "262011234567890", "405025123456789", "26201", "", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		imsi, err := ParseIMSI(s)
		if err != nil {
			if !errors.Is(err, ErrBadIMSI) {
				t.Fatalf("ParseIMSI(%q): error %v is not ErrBadIMSI", s, err)
			}
			// Decoding an unchecked IMSI must not panic either.
			_ = PLMNFromIMSI(IMSI(s))
			return
		}
		p := PLMNFromIMSI(imsi)
		if !p.Valid() || p.String() != string(imsi[:len(p.String())]) || p.MCC != imsi.MCC() {
			t.Fatalf("PLMNFromIMSI(%s) = %v", imsi, p)
		}
	})
}

func FuzzParsePLMN(f *testing.F) {
	for _, s := range []string{"310260", "26201", "", "2620", "26a01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePLMN(s)
		if err != nil {
			return
		}
		b := p.BCD()
		q, err := PLMNFromBCD(b[:])
		if err != nil || q != p || p.String() != s {
			t.Fatalf("ParsePLMN(%q) = %v → % X → %v, %v", s, p, b, q, err)
		}
	})
}
