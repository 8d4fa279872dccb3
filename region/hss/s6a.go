package hss

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/fiorix/go-diameter/v4/diam"
	"github.com/fiorix/go-diameter/v4/diam/avp"
	"github.com/fiorix/go-diameter/v4/diam/datatype"

	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/topology"
)

// result is the outcome of an S6a request: a Result-Code, or an
// Experimental-Result-Code of vendor 10415 (TS 29.272 §7.4).
type result struct {
	code   uint32
	exp    bool
	failed *diam.AVP // Failed-AVP content (RFC 6733 §7.5)
}

var resultOK = result{code: codeSuccess}

func expResult(code uint32) result { return result{code: code, exp: true} }

// request is what every S6a request carries (TS 29.272 §7.2, RFC 6733
// §6): Session-Id, Auth-Session-State, Origin-Host/Realm, Destination-Realm
// and User-Name (the IMSI).
type request struct {
	sid         string
	originHost  string
	originRealm string
	imsi        topology.IMSI
	visited     topology.PLMN
	visitedBCD  []byte
}

// parseCommon checks the AVPs every S6a request must carry (5005
// DIAMETER_MISSING_AVP with the missing AVP in Failed-AVP) and the IMSI
// (5004 DIAMETER_INVALID_AVP_VALUE). needPLMN adds Visited-PLMN-Id.
func parseCommon(m *diam.Message, needPLMN bool) (request, result, bool) {
	var r request
	var ok bool
	if r.sid, ok = text(find(m.AVP, avp.SessionID)); !ok || r.sid == "" {
		return r, result{code: codeMissingAVP, failed: missing(avp.SessionID, 0)}, false
	}
	if _, ok = u32(find(m.AVP, avp.AuthSessionState)); !ok {
		return r, result{code: codeMissingAVP, failed: missing(avp.AuthSessionState, 0)}, false
	}
	if r.originHost, ok = text(find(m.AVP, avp.OriginHost)); !ok || r.originHost == "" {
		return r, result{code: codeMissingAVP, failed: missing(avp.OriginHost, 0)}, false
	}
	if r.originRealm, ok = text(find(m.AVP, avp.OriginRealm)); !ok || r.originRealm == "" {
		return r, result{code: codeMissingAVP, failed: missing(avp.OriginRealm, 0)}, false
	}
	if _, ok = text(find(m.AVP, avp.DestinationRealm)); !ok {
		return r, result{code: codeMissingAVP, failed: missing(avp.DestinationRealm, 0)}, false
	}
	un := find(m.AVP, avp.UserName)
	name, ok := text(un)
	if !ok {
		return r, result{code: codeMissingAVP, failed: missing(avp.UserName, 0)}, false
	}
	imsi, err := topology.ParseIMSI(name)
	if err != nil {
		return r, result{code: codeInvalidAVPValue, failed: un}, false
	}
	r.imsi = imsi
	if needPLMN {
		pa := find(m.AVP, avp.VisitedPLMNID)
		b, ok := octets(pa)
		if !ok {
			return r, result{code: codeMissingAVP, failed: missing(avp.VisitedPLMNID, vendor3GPP)}, false
		}
		plmn, err := topology.PLMNFromBCD(b)
		if err != nil {
			return r, result{code: codeInvalidAVPValue, failed: pa}, false
		}
		r.visited, r.visitedBCD = plmn, b
	}
	return r, resultOK, true
}

// answer starts an S6a answer: Session-Id, Vendor-Specific-Application-Id,
// the result, Auth-Session-State NO_STATE_MAINTAINED, Origin-Host/Realm
// (TS 29.272 §7.2 answer ABNFs). A Failed-AVP is appended.
func (s *Server) answer(req *diam.Message, sid string, r result) *diam.Message {
	a := req.Answer(0)
	a.Header.CommandFlags &^= diam.RetransmittedFlag
	if !r.exp && r.code >= 3000 && r.code < 4000 {
		a.Header.CommandFlags |= diam.ErrorFlag
	}
	if sid != "" {
		a.NewAVP(avp.SessionID, fM, 0, datatype.UTF8String(sid))
	}
	a.AddAVP(s6aAppID())
	if r.exp {
		a.AddAVP(experimental(r.code))
	} else {
		a.AddAVP(resultCode(r.code))
	}
	a.NewAVP(avp.AuthSessionState, fM, 0, datatype.Enumerated(1))
	a.NewAVP(avp.OriginHost, fM, 0, datatype.DiameterIdentity(s.cfg.OriginHost))
	a.NewAVP(avp.OriginRealm, fM, 0, datatype.DiameterIdentity(s.cfg.OriginRealm))
	if r.failed != nil {
		a.AddAVP(failedAVP(r.failed))
	}
	// RFC 6733 §6.2: Proxy-Info AVPs are echoed, in order.
	for _, p := range req.AVP {
		if p.Code == avp.ProxyInfo {
			a.AddAVP(p)
		}
	}
	return a
}

// registryResult maps a registry error to the answer (issue 4 Deliver 2).
func registryResult(err error) result {
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return expResult(expUserUnknown)
	case errors.Is(err, registry.ErrUnavailable), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, registry.ErrConflict):
		// RFC 6733 §7.1.3: the MME may try another HSS.
		return result{code: codeTooBusy}
	}
	return result{code: codeUnableToComply}
}

// serveS6a handles one S6a request on a pool goroutine.
func (p *peer) serveS6a(h header, m *diam.Message) {
	s := p.s
	start := s.cfg.Clock.Now()
	ctx := s.requestContext()
	var (
		a     *diam.Message
		r     result
		after func(context.Context)
	)
	switch h.Code {
	case cmdAIR:
		a, r = s.handleAIR(ctx, m)
	case cmdULR:
		a, r, after = s.handleULR(ctx, p, m)
	case cmdPUR:
		a, r = s.handlePUR(ctx, m)
	case cmdNOR:
		a, r = s.handleNOR(ctx, m)
	}
	name := commandName(h.Code)
	s.met.requests.WithLabelValues(name, resultLabel(r.code, r.exp)).Inc()
	s.met.latency.WithLabelValues(name).Observe(s.cfg.Clock.Now().Sub(start).Seconds())
	if err := p.send(a); err != nil {
		s.log.Debug("answer not sent", "command", name, "peer", p.src, "err", err)
	}
	if after != nil {
		s.goOutbound(after)
	}
}

// goOutbound runs work after an answer (the CLR to a previous MME) on its
// own bounded pool (Config.MaxOutbound), so that an MME that does not
// answer holds no request slot; when the pool is full the work is dropped
// and counted.
func (s *Server) goOutbound(work func(context.Context)) {
	select {
	case s.outSem <- struct{}{}:
	default:
		s.met.outbound.WithLabelValues("CLR", "dropped").Inc()
		s.log.Warn("outbound pool full: CLR to the previous MME dropped")
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.outSem
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() { <-s.outSem }()
		ctx, cancel := context.WithTimeout(s.ctx, s.outboundBudget())
		defer cancel()
		work(ctx)
	}()
}

// roamingAllowed applies the subscriber's roaming policy to the visited
// PLMN (TS 29.272 §5.2.1.1.3, §5.2.3.1.3: DIAMETER_ERROR_ROAMING_NOT_ALLOWED).
func roamingAllowed(sub registry.Subscriber, visited topology.PLMN) (bool, string) {
	if sub.Status != registry.StatusActive {
		return false, "subscriber " + string(sub.Status)
	}
	pl := sub.Policy
	id := visited.String()
	if slices.Contains(pl.BarredPLMNs, id) {
		return false, "PLMN " + id + " barred"
	}
	if len(pl.AllowedPLMNs) > 0 && !slices.Contains(pl.AllowedPLMNs, id) {
		return false, "PLMN " + id + " not allowed"
	}
	if len(pl.BarredCountries) == 0 && len(pl.AllowedCountries) == 0 {
		return true, ""
	}
	c, known := topology.LookupMCC(visited.MCC)
	has := func(list []string) bool {
		return known && slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, c.Alpha2) })
	}
	if has(pl.BarredCountries) {
		return false, "country " + c.Alpha2 + " barred"
	}
	if len(pl.AllowedCountries) > 0 && !has(pl.AllowedCountries) {
		return false, "country of MCC " + string(visited.MCC) + " not allowed"
	}
	return true, ""
}

// ratOf maps RAT-Type (TS 29.212 §5.3.31) to the registry's RAT.
func ratOf(v uint32) registry.RAT {
	switch v {
	case 1000, 1003: // UTRAN, HSPA_EVOLUTION
		return registry.RATUTRAN
	case 1001: // GERAN
		return registry.RATGERAN
	case 1004:
		return registry.RATEUTRAN
	case 1005:
		return registry.RATNBIoT
	case 1007:
		return registry.RATLTEM
	}
	return ""
}

func ratAllowed(sub registry.Subscriber, rat registry.RAT) bool {
	return rat == "" || !slices.Contains(sub.Policy.BarredRATs, rat)
}

// epochLen is how long requests share one deadline context.
const epochLen = 100 * time.Millisecond

type epoch struct {
	ctx    context.Context
	cancel context.CancelFunc // the deadline cancels it anyway
	until  time.Time
}

// requestContext returns the context bounding a request's registry calls:
// a deadline between RequestTimeout and RequestTimeout+epochLen from now.
// Requests arriving within one epoch share it: a timer per request cost 14%
// of the CPU at 4 x 64 in flight, and contexts derived from one cancelable
// parent contend on its lock. Close cancels the current epoch; requests of
// older epochs end by their deadline. (Real time: these are deadlines for
// I/O, not protocol timers.)
func (s *Server) requestContext() context.Context {
	now := time.Now()
	if e := s.epoch.Load(); e != nil && now.Before(e.until) {
		return e.ctx
	}
	s.epochMu.Lock()
	defer s.epochMu.Unlock()
	if e := s.epoch.Load(); e != nil && now.Before(e.until) {
		return e.ctx
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout+epochLen)
	s.epoch.Store(&epoch{ctx: ctx, cancel: cancel, until: now.Add(epochLen)})
	return ctx
}
