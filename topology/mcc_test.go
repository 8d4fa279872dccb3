package topology

import (
	"errors"
	"regexp"
	"testing"
)

// TestMCCTable checks every row of the generated table: a country and a
// location for every MCC.
func TestMCCTable(t *testing.T) {
	all := MCCs()
	if len(all) < 230 {
		t.Fatalf("MCCs() has %d entries; E.212 assigns about 240 geographic MCCs", len(all))
	}
	alpha2 := regexp.MustCompile(`^[A-Z]{2}$`)
	for i, c := range all {
		if _, err := ParseMCC(string(c.MCC)); err != nil {
			t.Errorf("row %d: %v", i, err)
		}
		if i > 0 && all[i-1].MCC >= c.MCC {
			t.Errorf("MCCs() not ascending at %s", c.MCC)
		}
		if !alpha2.MatchString(c.Alpha2) || c.Name == "" {
			t.Errorf("MCC %s: country %q %q", c.MCC, c.Alpha2, c.Name)
		}
		if c.Lat < -90 || c.Lat > 90 || c.Lon < -180 || c.Lon > 180 || (c.Lat == 0 && c.Lon == 0) {
			t.Errorf("MCC %s (%s): location %g,%g", c.MCC, c.Alpha2, c.Lat, c.Lon)
		}
		if got, ok := LookupMCC(c.MCC); !ok || got != c {
			t.Errorf("LookupMCC(%s) = %+v, %v; MCCs() has %+v", c.MCC, got, ok, c)
		}
		if c.MCC[0] == '9' {
			t.Errorf("MCC %s: shared non-geographic code in the table", c.MCC)
		}
		if _, err := Rank(c.MCC); err != nil {
			t.Errorf("Rank(%s): %v", c.MCC, err)
		}
	}
}

func TestLookupMCC(t *testing.T) {
	tests := []struct {
		mcc    MCC
		alpha2 string
		ok     bool
	}{
		{"262", "DE", true},
		{"334", "MX", true},
		{"505", "AU", true},
		{"440", "JP", true},
		{"441", "JP", true},
		{"310", "US", true},
		{"316", "US", true},
		{"234", "GB", true},
		{"235", "GB", true},
		{"302", "CA", true},
		{"460", "CN", true},
		{"404", "IN", true},
		{"405", "IN", true},
		{"724", "BR", true},
		{"221", "XK", true},
		{"901", "", false}, // international, shared: no country
		{"999", "", false},
		{"001", "", false}, // test network, not in E.212
		{"203", "", false}, // unassigned
		{"", "", false},
		{"26", "", false},
	}
	for _, tt := range tests {
		c, ok := LookupMCC(tt.mcc)
		if ok != tt.ok || c.Alpha2 != tt.alpha2 {
			t.Errorf("LookupMCC(%q) = %+v, %v; want %s, %v", tt.mcc, c, ok, tt.alpha2, tt.ok)
		}
	}
}

func TestParseMCC(t *testing.T) {
	for _, s := range []string{"", "26", "2620", "2a2", " 262", "٢٦٢"} {
		_, err := ParseMCC(s)
		if !errors.Is(err, ErrBadMCC) {
			t.Errorf("ParseMCC(%q) error = %v, want ErrBadMCC", s, err)
		}
	}
	if m, err := ParseMCC("262"); err != nil || m != "262" {
		t.Errorf("ParseMCC(262) = %q, %v", m, err)
	}
}

func TestParseMCCTableRejects(t *testing.T) {
	bad := []string{
		"262\tDE\t52.5\t13.4\t2\t\t\tGermany\n",                                      // 8 fields
		"26x\tDE\t52.5\t13.4\t2\t\t\tGermany\tx\n",                                   // bad MCC
		"262\tDE\tnorth\t13.4\t2\t\t\tGermany\tx\n",                                  // bad lat
		"262\tDE\t52.5\t13.4\t4\t\t\tGermany\tx\n",                                   // bad MNC length
		"262\tDE\t52.5\t13.4\t2\t\t\tGermany\tx\n262\tDE\t52.5\t13.4\t2\t\t\tG\tx\n", // duplicate
	}
	for _, data := range bad {
		if _, err := parseMCCTable(data); err == nil {
			t.Errorf("parseMCCTable(%q) accepted", data)
		}
	}
}
