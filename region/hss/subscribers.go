package hss

import (
	"context"

	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/topology"
)

// Subscribers is what the HSS needs from the subscriber registry; the
// federation's *registry.Store implements it. Errors are classified with
// errors.Is against registry.ErrNotFound (→ Experimental-Result 5001
// DIAMETER_ERROR_USER_UNKNOWN), registry.ErrUnavailable (→ 3004
// DIAMETER_TOO_BUSY, so that the MME tries another HSS) and
// registry.ErrConflict (compare-and-set lost; retried).
type Subscribers interface {
	// Subscriber returns the profile (cache, then database).
	Subscriber(ctx context.Context, imsi topology.IMSI) (registry.Subscriber, error)
	// AuthData returns Ki, OPc and AMF.
	AuthData(ctx context.Context, imsi topology.IMSI) (registry.AuthData, error)
	// NextSQNs allocates n fresh 48-bit SQNs (SEQ<<5 | IND) from region's
	// IND slice (TS 33.102 Annex C.3), in increasing order.
	NextSQNs(ctx context.Context, imsi topology.IMSI, region topology.RegionID, n int) ([]uint64, error)
	// Resync sets SQN_HE from a verified SQN_MS (TS 33.102 §6.3.5) so that
	// the next SQN allocated for region is fresh for the USIM.
	Resync(ctx context.Context, imsi topology.IMSI, region topology.RegionID, sqnMS uint64) error
	// Serving returns the serving row (registry.ErrNotFound: none yet).
	Serving(ctx context.Context, imsi topology.IMSI) (registry.Serving, error)
	// UpdateServing writes s if the stored row's Generation still equals
	// s.Generation (compare-and-set, registry.ErrConflict otherwise) and
	// returns the previous row.
	UpdateServing(ctx context.Context, s registry.Serving) (registry.Serving, error)
}
