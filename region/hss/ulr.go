package hss

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/fiorix/go-diameter/v4/diam"
	"github.com/fiorix/go-diameter/v4/diam/avp"
	"github.com/fiorix/go-diameter/v4/diam/datatype"

	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/topology"
)

// ULR-Flags bits (TS 29.272 §7.3.7).
const (
	ulrSingleRegistration = 1 << 0
	ulrS6aIndicator       = 1 << 1
	ulrSkipSubscriberData = 1 << 2
	ulrInitialAttach      = 1 << 5
)

// ulrRequest is an Update-Location-Request (TS 29.272 §7.2.3).
type ulrRequest struct {
	request
	rat   registry.RAT
	flags uint32
}

// parseULR extracts the ULR; it never touches the registry (fuzzed).
func parseULR(m *diam.Message) (ulrRequest, result, bool) {
	var q ulrRequest
	var r result
	var ok bool
	if q.request, r, ok = parseCommon(m, true); !ok {
		return q, r, false
	}
	rt, ok := u32(find(m.AVP, avp.RATType))
	if !ok {
		return q, result{code: codeMissingAVP, failed: missing(avp.RATType, vendor3GPP)}, false
	}
	q.rat = ratOf(rt)
	if q.flags, ok = u32(find(m.AVP, avp.ULRFlags)); !ok {
		return q, result{code: codeMissingAVP, failed: missing(avp.ULRFlags, vendor3GPP)}, false
	}
	return q, resultOK, true
}

// handleULR answers an ULR (TS 29.272 §5.2.1.1.3): roaming and RAT policy,
// steering, the serving row by compare-and-set, the ULA with the steered
// region's PGW, then a CLR to a previous MME.
func (s *Server) handleULR(ctx context.Context, p *peer, m *diam.Message) (*diam.Message, result, func(context.Context)) {
	q, r, ok := parseULR(m)
	if !ok {
		return s.answer(m, q.sid, r), r, nil
	}
	fail := func(r result) (*diam.Message, result, func(context.Context)) {
		return s.answer(m, q.sid, r), r, nil
	}
	s.learnRoute(q.originHost, p)
	sub, err := s.cfg.Subscribers.Subscriber(ctx, q.imsi)
	if err != nil {
		if !errors.Is(err, registry.ErrNotFound) {
			s.log.Warn("ULR: subscriber lookup failed", "imsi", q.imsi, "err", err)
		}
		return fail(registryResult(err))
	}
	if ok, why := roamingAllowed(sub, q.visited); !ok {
		s.log.Info("ULR: roaming not allowed", "imsi", q.imsi, "visited", q.visited, "why", why)
		return fail(expResult(expRoamingNotAllowed))
	}
	if !ratAllowed(sub, q.rat) {
		s.log.Info("ULR: RAT not allowed", "imsi", q.imsi, "rat", q.rat)
		return fail(expResult(expRATNotAllowed))
	}
	if len(sub.APNs) == 0 {
		return fail(expResult(expUnknownEPSSub))
	}
	regions, err := s.steer(ctx, sub, q.visited)
	if err != nil {
		s.log.Warn("ULR: steering failed", "imsi", q.imsi, "visited", q.visited, "err", err)
		return fail(result{code: codeTooBusy})
	}
	prev, err := s.updateServing(ctx, registry.Serving{
		IMSI: q.imsi, MMEHost: q.originHost, MMERealm: q.originRealm,
		VisitedPLMN: q.visited, Region: regions[0],
	})
	if err != nil {
		s.log.Warn("ULR: serving update failed", "imsi", q.imsi, "err", err)
		return fail(registryResult(err))
	}
	a := s.answer(m, q.sid, resultOK)
	a.NewAVP(avp.ULAFlags, fV, vendor3GPP, datatype.Unsigned32(0))
	if q.flags&ulrSkipSubscriberData == 0 {
		sd, err := s.subscriptionData(sub, regions)
		if err != nil {
			s.log.Error("ULR: subscription data", "imsi", q.imsi, "err", err)
			return fail(result{code: codeUnableToComply})
		}
		a.AddAVP(sd)
	}
	var after func(context.Context)
	if prev.MMEHost != "" && !strings.EqualFold(prev.MMEHost, q.originHost) {
		// TS 29.272 §5.2.1.1.3: cancel the previous MME; INITIAL_ATTACH_
		// PROCEDURE when the ULR had the Initial-Attach-Indicator.
		ct := MMEUpdateProcedure
		if q.flags&ulrInitialAttach != 0 {
			ct = InitialAttachProcedure
		}
		old := prev
		after = func(ctx context.Context) {
			if err := s.sendCLR(ctx, old, ct, false); err != nil {
				s.log.Info("CLR to previous MME failed", "imsi", old.IMSI, "mme", old.MMEHost, "err", err)
			}
		}
	}
	return a, resultOK, after
}

// steer asks the Steerer for every APN; the first APN (the default, Context
// -Identifier 1) decides the serving region.
func (s *Server) steer(ctx context.Context, sub registry.Subscriber, visited topology.PLMN) ([]topology.RegionID, error) {
	out := make([]topology.RegionID, len(sub.APNs))
	for i, apn := range sub.APNs {
		r, reasons, err := s.cfg.Steering.Steer(ctx, sub.IMSI, sub, visited, apn.Name)
		s.log.Debug("steered", "imsi", sub.IMSI, "apn", apn.Name, "visited", visited, "region", r, "reasons", reasons)
		if err != nil {
			return nil, fmt.Errorf("hss: steer %s: %w", apn.Name, err)
		}
		if _, ok := s.cfg.PGWs[r]; !ok {
			return nil, fmt.Errorf("hss: steer %s: no PGW configured for region %s", apn.Name, r)
		}
		out[i] = r
	}
	return out, nil
}

// updateServing writes the serving row by compare-and-set on Generation,
// re-reading and retrying when another node won (DESIGN.md §2).
func (s *Server) updateServing(ctx context.Context, want registry.Serving) (registry.Serving, error) {
	// ULRs for one IMSI are serialised on this node (striped lock): the
	// compare-and-set then only races other nodes. The generation this node
	// last wrote is kept as a hint, saving the read (a third of a ULR's
	// SQLite time); a stale hint costs one ErrConflict and a re-read.
	i := stripe(want.IMSI)
	mu := &s.servingLocks[i]
	mu.Lock()
	defer mu.Unlock()
	hints := s.servingHints[i]
	if hints == nil {
		hints = make(map[topology.IMSI]int64)
		s.servingHints[i] = hints
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		gen, ok := hints[want.IMSI]
		if !ok {
			cur, gerr := s.cfg.Subscribers.Serving(ctx, want.IMSI)
			switch {
			case gerr == nil:
				gen = cur.Generation
			case errors.Is(gerr, registry.ErrNotFound):
				gen = 0
			default:
				return registry.Serving{}, gerr
			}
		}
		want.Generation = gen
		want.Updated = s.cfg.Clock.Now()
		var prev registry.Serving
		prev, err = s.cfg.Subscribers.UpdateServing(ctx, want)
		if err == nil {
			if len(hints) >= maxHintsPerStripe {
				for k := range hints { // evict one, any
					delete(hints, k)
					break
				}
			}
			hints[want.IMSI] = gen + 1 // the registry increments on success
			return prev, nil
		}
		delete(hints, want.IMSI)
		if !errors.Is(err, registry.ErrConflict) {
			return registry.Serving{}, err
		}
	}
	return registry.Serving{}, fmt.Errorf("hss: serving row: %w", err)
}

// subscriptionData builds Subscription-Data (TS 29.272 §7.3.2) with the
// APN-Configuration-Profile naming each APN's steered PGW.
func (s *Server) subscriptionData(sub registry.Subscriber, regions []topology.RegionID) (*diam.AVP, error) {
	g := &diam.GroupedAVP{}
	if sub.MSISDN != "" {
		tbcd, err := encodeTBCD(sub.MSISDN)
		if err != nil {
			return nil, err
		}
		g.AddAVP(diam.NewAVP(avp.MSISDN, fV, vendor3GPP, datatype.OctetString(tbcd)))
	}
	// §7.3.29 Subscriber-Status SERVICE_GRANTED (a suspended subscriber was
	// rejected before); §7.3.21 Network-Access-Mode ONLY_PACKET.
	g.AddAVP(diam.NewAVP(avp.SubscriberStatus, fV, vendor3GPP, datatype.Enumerated(0)))
	g.AddAVP(diam.NewAVP(avp.NetworkAccessMode, fV, vendor3GPP, datatype.Enumerated(2)))
	if sub.AMBRUplink > 0 || sub.AMBRDownlink > 0 {
		g.AddAVP(ambr(sub.AMBRUplink, sub.AMBRDownlink))
	}
	prof := &diam.GroupedAVP{}
	prof.AddAVP(diam.NewAVP(avp.ContextIdentifier, fV, vendor3GPP, datatype.Unsigned32(1)))
	// §7.3.33 All_APN_CONFIGURATIONS_INCLUDED (0).
	prof.AddAVP(diam.NewAVP(avp.AllAPNConfigurationsIncludedIndicator, fV, vendor3GPP, datatype.Enumerated(0)))
	for i, apn := range sub.APNs {
		pgw := s.cfg.PGWs[regions[i]]
		prof.AddAVP(s.apnConfiguration(uint32(i+1), apn, pgw))
	}
	g.AddAVP(diam.NewAVP(avp.APNConfigurationProfile, fV, vendor3GPP, prof))
	return diam.NewAVP(avp.SubscriptionData, fV, vendor3GPP, g), nil
}

// apnConfiguration is one APN-Configuration (TS 29.272 §7.3.35).
func (s *Server) apnConfiguration(ctxID uint32, apn registry.APN, pgw PGW) *diam.AVP {
	pdn := 0 // IPv4 (§7.3.62)
	switch apn.PDNType {
	case registry.PDNIPv6:
		pdn = 1
	case registry.PDNIPv4v6:
		pdn = 2
	}
	qci, prio := uint32(apn.QCI), uint32(apn.ARPPriority)
	if qci == 0 {
		qci = 9
	}
	if prio == 0 {
		prio = 8
	}
	ip := net.IP(pgw.Addr.AsSlice())
	g := &diam.GroupedAVP{AVP: []*diam.AVP{
		diam.NewAVP(avp.ContextIdentifier, fV, vendor3GPP, datatype.Unsigned32(ctxID)),
		diam.NewAVP(avp.PDNType, fV, vendor3GPP, datatype.Enumerated(pdn)),
		// Service-Selection is the IETF AVP 493 (RFC 5778), vendor 0
		// (notes/diameter.md §2: go-diameter's dictionary says 10415).
		diam.NewAVP(avpServiceSelection, fM, 0, datatype.UTF8String(apn.Name)),
		diam.NewAVP(avp.EPSSubscribedQoSProfile, fV, vendor3GPP, &diam.GroupedAVP{AVP: []*diam.AVP{
			diam.NewAVP(avp.QoSClassIdentifier, fV, vendor3GPP, datatype.Enumerated(qci)),
			diam.NewAVP(avp.AllocationRetentionPriority, fV, vendor3GPP, &diam.GroupedAVP{AVP: []*diam.AVP{
				diam.NewAVP(avp.PriorityLevel, fV, vendor3GPP, datatype.Unsigned32(prio)),
				diam.NewAVP(avp.PreemptionCapability, fV, vendor3GPP, datatype.Enumerated(1)),    // DISABLED
				diam.NewAVP(avp.PreemptionVulnerability, fV, vendor3GPP, datatype.Enumerated(0)), // ENABLED
			}}),
		}}),
		// §7.3.38 NOTALLOWED: the visited network may not pick a PGW.
		diam.NewAVP(avp.VPLMNDynamicAddressAllowed, fV, vendor3GPP, datatype.Enumerated(0)),
		// MIP6-Agent-Info (RFC 5447 §4.2.1, vendor 0) names the steered
		// region's PGW: address and host (TS 29.272 §7.3.35).
		diam.NewAVP(avpMIP6AgentInfo, fM, 0, &diam.GroupedAVP{AVP: []*diam.AVP{
			diam.NewAVP(avpMIPHomeAgentAddr, fM, 0, datatype.Address(ip)),
			diam.NewAVP(avpMIPHomeAgentHost, fM, 0, &diam.GroupedAVP{AVP: []*diam.AVP{
				diam.NewAVP(avp.DestinationRealm, fM, 0, datatype.DiameterIdentity(pgw.realm(s.cfg.OriginRealm))),
				diam.NewAVP(avp.DestinationHost, fM, 0, datatype.DiameterIdentity(pgw.Host)),
			}}),
		}}),
		// §7.3.44 STATIC: the PGW is the one named here.
		diam.NewAVP(avp.PDNGWAllocationType, fV, vendor3GPP, datatype.Enumerated(0)),
	}}
	if apn.AMBRUplink > 0 || apn.AMBRDownlink > 0 {
		g.AddAVP(ambr(apn.AMBRUplink, apn.AMBRDownlink))
	}
	return diam.NewAVP(avp.APNConfiguration, fV, vendor3GPP, g)
}

// ambr is AMBR (TS 29.272 §7.3.41) in bits per second.
func ambr(ul, dl uint32) *diam.AVP {
	return diam.NewAVP(avp.AMBR, fV, vendor3GPP, &diam.GroupedAVP{AVP: []*diam.AVP{
		diam.NewAVP(avp.MaxRequestedBandwidthUL, fV, vendor3GPP, datatype.Unsigned32(ul)),
		diam.NewAVP(avp.MaxRequestedBandwidthDL, fV, vendor3GPP, datatype.Unsigned32(dl)),
	}})
}

// encodeTBCD encodes digits as TBCD (TS 29.002 §17.7.8, TS 23.003 §3.3:
// MSISDN in international format, two digits per octet, low nibble first,
// 0xF filler).
func encodeTBCD(digits string) ([]byte, error) {
	digits = strings.TrimPrefix(digits, "+")
	if digits == "" || len(digits) > 15 {
		return nil, fmt.Errorf("hss: MSISDN %q: want 1 to 15 digits", digits)
	}
	out := make([]byte, (len(digits)+1)/2)
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("hss: MSISDN %q: not a digit at %d", digits, i+1)
		}
		if i%2 == 0 {
			out[i/2] = 0xF0 | (c - '0')
		} else {
			out[i/2] = out[i/2]&0x0F | (c-'0')<<4
		}
	}
	return out, nil
}

// stripe maps an IMSI to one of the serving-row locks (FNV-1a).
func stripe(imsi topology.IMSI) int {
	h := uint32(2166136261)
	for i := 0; i < len(imsi); i++ {
		h = (h ^ uint32(imsi[i])) * 16777619
	}
	return int(h % servingStripes)
}
