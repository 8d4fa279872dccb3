package hss

import (
	"context"
	"errors"

	"github.com/fiorix/go-diameter/v4/diam"
	"github.com/fiorix/go-diameter/v4/diam/avp"
	"github.com/fiorix/go-diameter/v4/diam/datatype"

	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/topology"
)

// airRequest is an Authentication-Information-Request (TS 29.272 §7.2.5).
type airRequest struct {
	request
	nE, nU       int    // vectors requested: E-UTRAN, UTRAN/GERAN
	resync       []byte // Re-Synchronization-Info, RAND ‖ AUTS
	resyncFailed *diam.AVP
}

// parseAIR extracts the AIR; it never touches the registry (fuzzed).
func parseAIR(m *diam.Message, maxVectors int) (airRequest, result, bool) {
	var q airRequest
	var r result
	var ok bool
	if q.request, r, ok = parseCommon(m, true); !ok {
		return q, r, false
	}
	count := func(g []*diam.AVP) int {
		n, ok := u32(find(g, avp.NumberOfRequestedVectors))
		if !ok || n == 0 {
			n = 1
		}
		return int(min(n, uint32(maxVectors)))
	}
	if e := find(m.AVP, avp.RequestedEUTRANAuthenticationInfo); e != nil {
		g := children(e, appS6a)
		q.nE = count(g)
		if rs := find(g, avp.ResynchronizationInfo); rs != nil {
			q.resync, _ = octets(rs)
			q.resyncFailed = rs
		}
	}
	if u := find(m.AVP, avp.RequestedUTRANGERANAuthenticationInfo); u != nil {
		g := children(u, appS6a)
		q.nU = count(g)
		if rs := find(g, avp.ResynchronizationInfo); rs != nil && q.resync == nil {
			q.resync, _ = octets(rs)
			q.resyncFailed = rs
		}
	}
	if q.resync != nil && len(q.resync) != 30 {
		return q, result{code: codeInvalidAVPValue, failed: q.resyncFailed}, false
	}
	return q, resultOK, true
}

// handleAIR answers an AIR (TS 29.272 §5.2.3.1.3) with 1–MaxVectors E-UTRAN
// vectors (S6a) and/or UTRAN quintuplets (S6d), SQNs from this region's IND
// slice, after verifying a Re-Synchronization-Info.
func (s *Server) handleAIR(ctx context.Context, m *diam.Message) (*diam.Message, result) {
	q, r, ok := parseAIR(m, s.cfg.MaxVectors)
	if !ok {
		return s.answer(m, q.sid, r), r
	}
	fail := func(r result) (*diam.Message, result) { return s.answer(m, q.sid, r), r }
	sub, auth, err := s.lookup(ctx, q.imsi)
	if err != nil {
		if !errors.Is(err, registry.ErrNotFound) {
			s.log.Warn("AIR: subscriber lookup failed", "imsi", q.imsi, "err", err)
		}
		return fail(registryResult(err))
	}
	if ok, why := roamingAllowed(sub, q.visited); !ok {
		s.log.Info("AIR: roaming not allowed", "imsi", q.imsi, "visited", q.visited, "why", why)
		return fail(expResult(expRoamingNotAllowed))
	}
	// Vectors for a barred RAT are not generated (TS 29.272 §5.2.3.1.3:
	// DIAMETER_ERROR_RAT_NOT_ALLOWED when nothing is left).
	if q.nE > 0 && !ratAllowed(sub, registry.RATEUTRAN) {
		q.nE = 0
	}
	if q.nU > 0 && !ratAllowed(sub, registry.RATUTRAN) {
		q.nU = 0
	}
	if q.nE == 0 && q.nU == 0 {
		if m.Header != nil && (find(m.AVP, avp.RequestedEUTRANAuthenticationInfo) != nil || find(m.AVP, avp.RequestedUTRANGERANAuthenticationInfo) != nil) {
			return fail(expResult(expRATNotAllowed))
		}
		// Nothing requested: TS 29.272 §7.4.4 AUTHENTICATION_DATA_UNAVAILABLE.
		return fail(expResult(expAuthDataUnavailable))
	}
	if q.resync != nil {
		sqnMS, err := verifyAUTS(auth, q.resync)
		if err != nil {
			// TS 33.102 §6.3.5: a bad MAC-S does not reset SQN_HE.
			s.log.Warn("AIR: resynchronisation rejected", "imsi", q.imsi, "err", err)
			return fail(expResult(expAuthDataUnavailable))
		}
		if err := s.cfg.Subscribers.Resync(ctx, q.imsi, s.cfg.Region, sqnMS); err != nil {
			s.log.Warn("AIR: resync failed", "imsi", q.imsi, "err", err)
			return fail(registryResult(err))
		}
		s.log.Info("AIR: SQN resynchronised", "imsi", q.imsi, "region", s.cfg.Region)
	}
	sqns, err := s.cfg.Subscribers.NextSQNs(ctx, q.imsi, s.cfg.Region, q.nE+q.nU)
	if err != nil || len(sqns) != q.nE+q.nU {
		s.log.Warn("AIR: SQN allocation failed", "imsi", q.imsi, "err", err)
		return fail(registryResult(err))
	}
	info := &diam.GroupedAVP{}
	for i := 0; i < q.nE; i++ {
		v, err := newEUTRANVector(auth, sqns[i], q.visitedBCD)
		if err != nil {
			s.log.Error("AIR: vector generation failed", "imsi", q.imsi, "err", err)
			return fail(result{code: codeUnableToComply})
		}
		info.AddAVP(diam.NewAVP(avp.EUTRANVector, fV, vendor3GPP, &diam.GroupedAVP{AVP: []*diam.AVP{
			diam.NewAVP(avp.ItemNumber, fV, vendor3GPP, datatype.Unsigned32(i+1)),
			diam.NewAVP(avp.RAND, fV, vendor3GPP, datatype.OctetString(v.RAND[:])),
			diam.NewAVP(avp.XRES, fV, vendor3GPP, datatype.OctetString(v.XRES)),
			diam.NewAVP(avp.AUTN, fV, vendor3GPP, datatype.OctetString(v.AUTN[:])),
			diam.NewAVP(avp.KASME, fV, vendor3GPP, datatype.OctetString(v.KASME[:])),
		}}))
	}
	for i := 0; i < q.nU; i++ {
		v, err := newUTRANVector(auth, sqns[q.nE+i])
		if err != nil {
			s.log.Error("AIR: vector generation failed", "imsi", q.imsi, "err", err)
			return fail(result{code: codeUnableToComply})
		}
		info.AddAVP(diam.NewAVP(avpUTRANVector, fV, vendor3GPP, &diam.GroupedAVP{AVP: []*diam.AVP{
			diam.NewAVP(avp.ItemNumber, fV, vendor3GPP, datatype.Unsigned32(i+1)),
			diam.NewAVP(avp.RAND, fV, vendor3GPP, datatype.OctetString(v.RAND[:])),
			diam.NewAVP(avp.XRES, fV, vendor3GPP, datatype.OctetString(v.XRES)),
			diam.NewAVP(avp.AUTN, fV, vendor3GPP, datatype.OctetString(v.AUTN[:])),
			diam.NewAVP(avpConfidentialityKey, fV, vendor3GPP, datatype.OctetString(v.CK[:])),
			diam.NewAVP(avpIntegrityKey, fV, vendor3GPP, datatype.OctetString(v.IK[:])),
		}}))
	}
	a := s.answer(m, q.sid, resultOK)
	a.AddAVP(diam.NewAVP(avp.AuthenticationInfo, fV, vendor3GPP, info))
	return a, resultOK
}

// lookuper is implemented by *registry.Store: profile and keys in one cache
// lookup. Other Subscribers get two calls.
type lookuper interface {
	Lookup(ctx context.Context, imsi topology.IMSI) (registry.Subscriber, registry.AuthData, error)
}

func (s *Server) lookup(ctx context.Context, imsi topology.IMSI) (registry.Subscriber, registry.AuthData, error) {
	if l, ok := s.cfg.Subscribers.(lookuper); ok {
		return l.Lookup(ctx, imsi)
	}
	sub, err := s.cfg.Subscribers.Subscriber(ctx, imsi)
	if err != nil {
		return sub, registry.AuthData{}, err
	}
	a, err := s.cfg.Subscribers.AuthData(ctx, imsi)
	return sub, a, err
}
