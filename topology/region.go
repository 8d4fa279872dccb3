package topology

// Region is one region of the federation and the point on Earth its
// rendezvous point is assumed to be at, for distance and RTT estimates.
type Region struct {
	ID   RegionID
	City string
	// Lat and Lon are WGS 84 degrees (north and east positive).
	Lat, Lon float64
}

// regions is the fixed order JP, US, DE, AU: the order of Regions and the
// tie-break of every ranking. Coordinates are city centres, except US: the
// Oregon data-centre cluster is at Boardman (Morrow County), not Portland,
// about 250 km further east.
var regions = [...]Region{
	{ID: JP, City: "Tokyo", Lat: 35.6762, Lon: 139.6503},
	{ID: US, City: "Boardman, Oregon", Lat: 45.8399, Lon: -119.7006},
	{ID: DE, City: "Frankfurt", Lat: 50.1109, Lon: 8.6821},
	{ID: AU, City: "Sydney", Lat: -33.8688, Lon: 151.2093},
}

// Regions returns the four regions in the fixed order JP, US, DE, AU. The
// slice is a fresh copy; callers may modify it.
func Regions() []Region {
	out := make([]Region, len(regions))
	copy(out, regions[:])
	return out
}

// LookupRegion returns the region with the given ID.
func LookupRegion(id RegionID) (Region, bool) {
	for _, r := range regions {
		if r.ID == id {
			return r, true
		}
	}
	return Region{}, false
}

// regionIndex is the position of id in the fixed order, or -1.
func regionIndex(id RegionID) int {
	for i, r := range regions {
		if r.ID == id {
			return i
		}
	}
	return -1
}
