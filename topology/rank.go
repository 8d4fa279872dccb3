package topology

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// The RTT model. A great-circle distance underestimates the cable: the
// refractive index of silica fibre (~1.47) gives light about 200 km per
// millisecond (c/1.47 ≈ 204 km/ms), and submarine and terrestrial routes are
// longer than the geodesic; 1.5 is a middle path-stretch factor between
// well-connected pairs (~1.2–1.4) and detours via hubs (2 and more). So
//
//	rtt_ms = 2 · km · PathStretch / FibreKMPerMS
//
// e.g. Tokyo–Frankfurt, 9 350 km → 140 ms. Real routes between some pairs
// detour much further (and many pairs less), so the number is a static
// estimate for ranking — a uniform factor cannot change the order, only the
// geometry does — and for sizing defaults; measured RTTs (membership)
// override it at run time.
const (
	// FibreKMPerMS is the speed of light in optical fibre, km per ms.
	FibreKMPerMS = 200.0
	// PathStretch is the ratio of fibre path length to great-circle distance.
	PathStretch = 1.5
	// EarthRadiusKM is the mean Earth radius (IUGG), km.
	EarthRadiusKM = 6371.0
)

// Estimate is the estimated distance and round-trip time from a point to a region.
type Estimate struct {
	Region RegionID
	KM     float64
	RTT    time.Duration
}

// DistanceKM returns the great-circle (haversine) distance between two
// points given in degrees, on a sphere of radius EarthRadiusKM.
func DistanceKM(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	p1, p2 := lat1*rad, lat2*rad
	dp, dl := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dp/2)*math.Sin(dp/2) + math.Cos(p1)*math.Cos(p2)*math.Sin(dl/2)*math.Sin(dl/2)
	// Rounding can push a a hair above 1 for antipodes.
	a = math.Min(1, math.Max(0, a))
	return 2 * EarthRadiusKM * math.Asin(math.Sqrt(a))
}

// EstimateRTT returns the model round-trip time over km of great-circle distance.
func EstimateRTT(km float64) time.Duration {
	ms := 2 * km * PathStretch / FibreKMPerMS
	return time.Duration(math.Round(ms * float64(time.Millisecond)))
}

// RankFrom returns every region, nearest first, as seen from a point
// (degrees). Equal distances keep the fixed region order JP, US, DE, AU, so
// the result is deterministic. Coordinates outside ±90/±180 are used as
// given (the trigonometry is periodic); NaN sorts last.
func RankFrom(lat, lon float64) []Estimate {
	out := make([]Estimate, len(regions))
	for i, r := range regions {
		km := DistanceKM(lat, lon, r.Lat, r.Lon)
		out[i] = Estimate{Region: r.ID, KM: km, RTT: EstimateRTT(km)}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].KM, out[j].KM
		if math.IsNaN(b) {
			return !math.IsNaN(a)
		}
		return a < b
	})
	return out
}

// Rank returns every region, nearest first, for a visited network in the
// country of mcc (at the country's representative location in the MCC table).
func Rank(mcc MCC) ([]Estimate, error) {
	c, ok := LookupMCC(mcc)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownMCC, string(mcc))
	}
	return RankFrom(c.Lat, c.Lon), nil
}
