package steering

import "github.com/rendezvous-core/rendezvous/topology"

// FromEstimates converts topology.Rank's result into Input.Static.
func FromEstimates(est []topology.Estimate) []Candidate {
	out := make([]Candidate, len(est))
	for i, e := range est {
		out[i] = Candidate{Region: e.Region, RTT: e.RTT}
	}
	return out
}

// EstimatedMatrix is the static region×region RTT estimate from the
// regions' locations (topology.EstimateRTT of the great-circle distance):
// Input.Estimated, and the fallback order of FailoverOrder.
func EstimatedMatrix() Matrix {
	rs := topology.Regions()
	m := make(Matrix, len(rs)*(len(rs)-1)/2)
	for i, a := range rs {
		for _, b := range rs[i+1:] {
			m[MakePair(a.ID, b.ID)] = topology.EstimateRTT(topology.DistanceKM(a.Lat, a.Lon, b.Lat, b.Lon))
		}
	}
	return m
}
