package topology

import (
	"math"
	"testing"
	"time"
)

func TestRegions(t *testing.T) {
	rs := Regions()
	want := []RegionID{JP, US, DE, AU}
	if len(rs) != len(want) {
		t.Fatalf("Regions() has %d regions, want %d", len(rs), len(want))
	}
	for i, r := range rs {
		if r.ID != want[i] {
			t.Errorf("Regions()[%d] = %s, want %s", i, r.ID, want[i])
		}
		got, ok := LookupRegion(r.ID)
		if !ok || got != r {
			t.Errorf("LookupRegion(%s) = %v, %v", r.ID, got, ok)
		}
		if r.City == "" || math.Abs(r.Lat) > 90 || math.Abs(r.Lon) > 180 {
			t.Errorf("region %s: bad city or coordinates %+v", r.ID, r)
		}
	}
	rs[0].ID = "XX" // a copy: must not change the package's table
	if Regions()[0].ID != JP {
		t.Error("Regions() returned the package's own slice")
	}
	if _, ok := LookupRegion("FR"); ok {
		t.Error("LookupRegion(FR) found a region")
	}
}

func TestDistanceAndRTT(t *testing.T) {
	tokyo, _ := LookupRegion(JP)
	frankfurt, _ := LookupRegion(DE)
	tests := []struct {
		name                   string
		lat1, lon1, lat2, lon2 float64
		wantKM, tolKM          float64
	}{
		{"same point", 10, 20, 10, 20, 0, 1e-9},
		{"quarter meridian", 0, 0, 90, 0, math.Pi * EarthRadiusKM / 2, 1e-6},
		{"antipodes", 0, 0, 0, 180, math.Pi * EarthRadiusKM, 1e-6},
		// Published great-circle distance Tokyo–Frankfurt ≈ 9 350 km.
		{"Tokyo-Frankfurt", tokyo.Lat, tokyo.Lon, frankfurt.Lat, frankfurt.Lon, 9350, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DistanceKM(tt.lat1, tt.lon1, tt.lat2, tt.lon2)
			if math.Abs(got-tt.wantKM) > tt.tolKM {
				t.Errorf("DistanceKM = %.3f, want %.3f ± %g", got, tt.wantKM, tt.tolKM)
			}
		})
	}
	rtts := []struct {
		km   float64
		want time.Duration
	}{
		{0, 0},
		{200, 3 * time.Millisecond}, // 2 · 200 · 1.5 / 200
		{1000, 15 * time.Millisecond},
		{10000, 150 * time.Millisecond},
	}
	for _, tt := range rtts {
		if got := EstimateRTT(tt.km); got != tt.want {
			t.Errorf("EstimateRTT(%g) = %v, want %v", tt.km, got, tt.want)
		}
	}
}

func TestRank(t *testing.T) {
	tests := []struct {
		mcc   MCC
		first RegionID
	}{
		{"334", US}, // Mexico
		{"310", US},
		{"302", US}, // Canada
		{"262", DE}, // Germany
		{"234", DE}, // United Kingdom
		{"250", DE}, // Russia (Moscow)
		{"505", AU}, // Australia
		{"530", AU}, // New Zealand
		{"440", JP}, // Japan
		{"450", JP}, // Korea
		{"460", JP}, // China
		{"655", DE}, // South Africa
	}
	for _, tt := range tests {
		t.Run(string(tt.mcc), func(t *testing.T) {
			est, err := Rank(tt.mcc)
			if err != nil {
				t.Fatal(err)
			}
			if len(est) != 4 || est[0].Region != tt.first {
				t.Fatalf("Rank(%s) = %+v, want %s first", tt.mcc, est, tt.first)
			}
			seen := map[RegionID]bool{}
			for i, e := range est {
				seen[e.Region] = true
				if i > 0 && e.KM < est[i-1].KM {
					t.Errorf("not nearest first: %+v", est)
				}
				if e.RTT != EstimateRTT(e.KM) {
					t.Errorf("%s: RTT %v, want EstimateRTT(%g)", e.Region, e.RTT, e.KM)
				}
			}
			if len(seen) != 4 {
				t.Errorf("regions repeated: %+v", est)
			}
		})
	}
	for _, bad := range []MCC{"", "999", "901", "000", "abc"} {
		if est, err := Rank(bad); err == nil {
			t.Errorf("Rank(%q) = %+v, want error", bad, est)
		}
	}
}

func TestRankFromTies(t *testing.T) {
	// Every region equidistant (NaN distances compare as ties, like the
	// poles would for regions on one parallel): the fixed order must hold.
	order := func(es []Estimate) []RegionID {
		var ids []RegionID
		for _, e := range es {
			ids = append(ids, e.Region)
		}
		return ids
	}
	got := order(RankFrom(math.NaN(), math.NaN()))
	want := []RegionID{JP, US, DE, AU}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("RankFrom(NaN) order = %v, want %v", got, want)
		}
	}
	// At a region's own point it comes first at 0 km.
	for _, r := range Regions() {
		es := RankFrom(r.Lat, r.Lon)
		if es[0].Region != r.ID || es[0].KM != 0 || es[0].RTT != 0 {
			t.Errorf("RankFrom(%s) = %+v", r.ID, es[0])
		}
	}
}
