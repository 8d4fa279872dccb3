package roamsim

import (
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/rendezvous-core/rendezvous/topology"
)

// RAT is the radio access a device uses, which selects the visited core
// nodes that serve it.
type RAT uint8

// RATs. The zero value means RAT4G.
const (
	// RAT4G: MME (S6a) + SGW (S8 GTPv2-C), E-UTRAN.
	RAT4G RAT = iota + 1
	// RAT3G: SGSN (Gp GTPv1-C), UTRAN. S6d/Gr is not emulated: the SGSN
	// goes straight to Create PDP Context at Config.GGSN.
	RAT3G
)

func (r RAT) String() string {
	switch r {
	case RAT3G:
		return "3G"
	default:
		return "4G"
	}
}

// MarshalText implements encoding.TextMarshaler ("4G", "3G").
func (r RAT) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler, so that a report
// written as JSON reads back.
func (r *RAT) UnmarshalText(b []byte) error {
	switch strings.ToUpper(string(b)) {
	case "4G", "":
		*r = RAT4G
	case "3G":
		*r = RAT3G
	default:
		return fmt.Errorf("roamsim: RAT %q: want 4G or 3G", b)
	}
	return nil
}

// Device is one roaming device: its SIM, its subscription and where it roams.
type Device struct {
	IMSI   topology.IMSI
	MSISDN string // E.164 digits
	// Ki and OPc are the SIM's Milenage keys (the USIM knows them).
	Ki  [16]byte
	OPc [16]byte
	// AMF is the subscriber's AMF as provisioned in the HSS (informational:
	// the USIM checks the AMF in AUTN, not this one).
	AMF uint16
	// APN requested at attach; "" = the subscription's default APN.
	APN string
	// Visited is the PLMN the device roams in (Visited-PLMN-Id, Serving
	// Network, ULI).
	Visited topology.PLMN
	// RAT: RAT4G (default) or RAT3G.
	RAT RAT
	// HomeRegion is informational (from the subscriber file).
	HomeRegion topology.RegionID
}

// Country is a visited country with one of its real operators' PLMN.
type Country struct {
	Alpha2    string // ISO 3166-1, e.g. "DE"
	Name      string
	Continent string // "Asia", "Europe", "North America", "South America", "Africa", "Oceania"
	PLMN      topology.PLMN
}

// DefaultCountries returns 30 visited countries covering every inhabited
// continent, with 2- and 3-digit MNCs.
func DefaultCountries() []Country {
	c := func(a2, name, cont, mcc, mnc string) Country {
		return Country{Alpha2: a2, Name: name, Continent: cont, PLMN: topology.PLMN{MCC: topology.MCC(mcc), MNC: mnc}}
	}
	return []Country{
		c("JP", "Japan", "Asia", "440", "10"),
		c("KR", "South Korea", "Asia", "450", "05"),
		c("CN", "China", "Asia", "460", "00"),
		c("IN", "India", "Asia", "404", "10"),
		c("SG", "Singapore", "Asia", "525", "01"),
		c("TH", "Thailand", "Asia", "520", "01"),
		c("AE", "United Arab Emirates", "Asia", "424", "02"),
		c("TR", "Turkey", "Asia", "286", "01"),
		c("DE", "Germany", "Europe", "262", "01"),
		c("FR", "France", "Europe", "208", "01"),
		c("GB", "United Kingdom", "Europe", "234", "15"),
		c("ES", "Spain", "Europe", "214", "01"),
		c("IT", "Italy", "Europe", "222", "01"),
		c("SE", "Sweden", "Europe", "240", "01"),
		c("PL", "Poland", "Europe", "260", "01"),
		c("US", "United States", "North America", "310", "260"),
		c("CA", "Canada", "North America", "302", "720"),
		c("MX", "Mexico", "North America", "334", "020"),
		c("BR", "Brazil", "South America", "724", "05"),
		c("AR", "Argentina", "South America", "722", "07"),
		c("CL", "Chile", "South America", "730", "01"),
		c("CO", "Colombia", "South America", "732", "101"),
		c("PE", "Peru", "South America", "716", "06"),
		c("ZA", "South Africa", "Africa", "655", "01"),
		c("NG", "Nigeria", "Africa", "621", "20"),
		c("KE", "Kenya", "Africa", "639", "02"),
		c("EG", "Egypt", "Africa", "602", "01"),
		c("AU", "Australia", "Oceania", "505", "01"),
		c("NZ", "New Zealand", "Oceania", "530", "01"),
		c("FJ", "Fiji", "Oceania", "542", "01"),
	}
}

// CountryByMCC finds the country of mcc in cs, else in the E.212 table of
// topology (with an empty PLMN MNC and Continent).
func CountryByMCC(cs []Country, mcc topology.MCC) (Country, bool) {
	for _, c := range cs {
		if c.PLMN.MCC == mcc {
			return c, true
		}
	}
	if tc, ok := topology.LookupMCC(mcc); ok {
		return Country{Alpha2: tc.Alpha2, Name: tc.Name, PLMN: topology.PLMN{MCC: mcc}}, true
	}
	return Country{}, false
}

// SelectCountries returns the countries of cs whose Alpha2 is in codes
// (case-insensitive), in the order of codes.
func SelectCountries(cs []Country, codes []string) ([]Country, error) {
	out := make([]Country, 0, len(codes))
	for _, code := range codes {
		found := false
		for _, c := range cs {
			if strings.EqualFold(c.Alpha2, code) {
				out = append(out, c)
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("roamsim: unknown country %q", code)
		}
	}
	return out, nil
}

// Template describes the subscribers Spread generates.
type Template struct {
	// IMSIPrefix is MCC+MNC (+ any MSIN prefix) of the home network, e.g.
	// "00101"; device i gets the prefix followed by FirstIndex+i, zero
	// padded to 15 digits.
	IMSIPrefix string
	FirstIndex uint64
	// MSISDNPrefix: device i gets MSISDNPrefix followed by FirstIndex+i
	// zero-padded to 12 digits in total ("" = no MSISDN).
	MSISDNPrefix string
	Ki, OPc      [16]byte
	// Keys, if set, gives per-IMSI keys instead of Ki/OPc.
	Keys func(topology.IMSI) (ki, opc [16]byte)
	AMF  uint16
	APN  string
	RAT  RAT
}

// Spread generates n devices from tmpl, round-robin over countries (in
// order), so n ≥ len(countries) covers them all.
func Spread(n int, countries []Country, tmpl Template) ([]Device, error) {
	if len(countries) == 0 {
		return nil, errors.New("roamsim: spread: no countries")
	}
	digits := 15 - len(tmpl.IMSIPrefix)
	if digits < 1 {
		return nil, fmt.Errorf("roamsim: spread: IMSI prefix %q too long", tmpl.IMSIPrefix)
	}
	devs := make([]Device, 0, n)
	for i := 0; i < n; i++ {
		idx := tmpl.FirstIndex + uint64(i)
		msin := strconv.FormatUint(idx, 10)
		if len(msin) > digits {
			return nil, fmt.Errorf("roamsim: spread: index %d does not fit in %d MSIN digits", idx, digits)
		}
		imsi, err := topology.ParseIMSI(tmpl.IMSIPrefix + strings.Repeat("0", digits-len(msin)) + msin)
		if err != nil {
			return nil, fmt.Errorf("roamsim: spread: %w", err)
		}
		d := Device{IMSI: imsi, Ki: tmpl.Ki, OPc: tmpl.OPc, AMF: tmpl.AMF, APN: tmpl.APN, RAT: tmpl.RAT,
			Visited: countries[i%len(countries)].PLMN}
		if tmpl.MSISDNPrefix != "" {
			pad := 12 - len(tmpl.MSISDNPrefix) - len(msin)
			if pad < 0 {
				pad = 0
			}
			d.MSISDN = tmpl.MSISDNPrefix + strings.Repeat("0", pad) + msin
		}
		if tmpl.Keys != nil {
			d.Ki, d.OPc = tmpl.Keys(imsi)
		}
		devs = append(devs, d)
	}
	return devs, nil
}

// AssignCountries sets Visited of each device round-robin over countries
// (for devices loaded from a subscriber file).
func AssignCountries(devs []Device, countries []Country) error {
	if len(countries) == 0 {
		return errors.New("roamsim: assign countries: no countries")
	}
	for i := range devs {
		devs[i].Visited = countries[i%len(countries)].PLMN
	}
	return nil
}

// LoadSubscribersCSV reads the lab's subscriber file: one subscriber per
// line, imsi,msisdn,ki,opc,amf,apn,home_region with ki/opc (32) and amf (4)
// in hex. A header line starting with "imsi" and blank lines or lines
// starting with '#' are skipped. Visited is left empty (AssignCountries).
func LoadSubscribersCSV(r io.Reader) ([]Device, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	var devs []Device
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return devs, nil
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, fmt.Errorf("roamsim: subscribers: %w", err)
		}
		if len(rec) > 0 && strings.EqualFold(strings.TrimSpace(rec[0]), "imsi") {
			continue
		}
		if len(rec) != 7 {
			return nil, fmt.Errorf("roamsim: subscribers line %d: %d fields, want 7 (imsi,msisdn,ki,opc,amf,apn,home_region)", line, len(rec))
		}
		d, err := parseSubscriber(rec)
		if err != nil {
			return nil, fmt.Errorf("roamsim: subscribers line %d: %w", line, err)
		}
		devs = append(devs, d)
	}
}

func parseSubscriber(rec []string) (Device, error) {
	for i := range rec {
		rec[i] = strings.TrimSpace(rec[i])
	}
	imsi, err := topology.ParseIMSI(rec[0])
	if err != nil {
		return Device{}, err
	}
	d := Device{IMSI: imsi, MSISDN: rec[1], APN: rec[5], HomeRegion: topology.RegionID(strings.ToUpper(rec[6]))}
	for _, c := range d.MSISDN {
		if c < '0' || c > '9' {
			return Device{}, fmt.Errorf("msisdn %q: not digits", rec[1])
		}
	}
	if err := hex16(rec[2], &d.Ki); err != nil {
		return Device{}, fmt.Errorf("ki: %w", err)
	}
	if err := hex16(rec[3], &d.OPc); err != nil {
		return Device{}, fmt.Errorf("opc: %w", err)
	}
	amf, err := hex.DecodeString(rec[4])
	if err != nil || len(amf) != 2 {
		return Device{}, fmt.Errorf("amf %q: want 4 hex digits", rec[4])
	}
	d.AMF = uint16(amf[0])<<8 | uint16(amf[1])
	return d, nil
}

func hex16(s string, dst *[16]byte) error {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return fmt.Errorf("%q: want 32 hex digits", s)
	}
	copy(dst[:], b)
	return nil
}

// plmnBCD encodes p as the 3-octet PLMN identity of TS 24.008 §10.5.1.3
// (topology.PLMN.BCD), rejecting an invalid PLMN.
func plmnBCD(p topology.PLMN) ([3]byte, error) {
	if !p.Valid() {
		return [3]byte{}, fmt.Errorf("roamsim: bad PLMN %q-%q", p.MCC, p.MNC)
	}
	return p.BCD(), nil
}

// plmnFromBCD decodes the 3-octet PLMN identity.
func plmnFromBCD(b []byte) (topology.PLMN, error) { return topology.PLMNFromBCD(b) }
