package hss

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fiorix/go-diameter/v4/diam"
	"github.com/fiorix/go-diameter/v4/diam/avp"
	"github.com/fiorix/go-diameter/v4/diam/datatype"

	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/topology"
)

// CancellationType is the Cancellation-Type of a CLR (TS 29.272 §7.3.24).
type CancellationType uint32

// Cancellation types.
const (
	MMEUpdateProcedure     CancellationType = 0
	SGSNUpdateProcedure    CancellationType = 1
	SubscriptionWithdrawal CancellationType = 2
	UpdateProcedureIWF     CancellationType = 3
	InitialAttachProcedure CancellationType = 4
)

// CLR-Flags bits (TS 29.272 §7.3.152).
const (
	clrS6aIndicator    = 1 << 0
	clrReattachRequire = 1 << 1
)

// AnswerError is returned when the MME answered an HSS-initiated request
// with something other than 2001.
type AnswerError struct {
	Command      string
	Code         uint32
	Experimental bool
}

func (e *AnswerError) Error() string {
	kind := "Result-Code"
	if e.Experimental {
		kind = "Experimental-Result-Code"
	}
	return fmt.Sprintf("hss: %s answered %s %d", e.Command, kind, e.Code)
}

// outboundBudget bounds one HSS-initiated request with its retries.
func (s *Server) outboundBudget() time.Duration {
	return s.cfg.RequestTimeout * time.Duration(s.cfg.RequestRetries+1)
}

// CancelLocation sends a CLR (TS 29.272 §5.2.1.2) for imsi to its serving
// MME, as recorded in the registry's serving row: the federation uses it
// with SubscriptionWithdrawal and reattach=true (CLR-Flags
// Reattach-Required) to re-home a device. The CLR goes over the connection
// whose CER Origin-Host is the MME, else the one its requests came over,
// else one of its realm; with none, ErrNoPeer (another node may have it).
// It returns ErrNotRegistered without a serving MME, ErrTimeout when no
// answer came after the retransmissions, or *AnswerError.
func (s *Server) CancelLocation(ctx context.Context, imsi topology.IMSI, cancellation CancellationType, reattach bool) error {
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	sv, err := s.cfg.Subscribers.Serving(ctx, imsi)
	if errors.Is(err, registry.ErrNotFound) || (err == nil && sv.MMEHost == "") {
		return fmt.Errorf("hss: cancel location %s: %w", imsi, ErrNotRegistered)
	}
	if err != nil {
		return fmt.Errorf("hss: cancel location %s: %w", imsi, err)
	}
	return s.sendCLR(ctx, sv, cancellation, reattach)
}

func (s *Server) sendCLR(ctx context.Context, sv registry.Serving, ct CancellationType, reattach bool) error {
	flags := uint32(clrS6aIndicator)
	if reattach {
		flags |= clrReattachRequire
	}
	build := func(hbh, e2e uint32) *diam.Message {
		m := s.newRequest(cmdCLR, hbh, e2e, sv)
		m.NewAVP(avp.CancellationType, fV, vendor3GPP, datatype.Enumerated(ct))
		m.NewAVP(avpCLRFlags, fV, vendor3GPP, datatype.Unsigned32(flags))
		return m
	}
	err := s.transact(ctx, "CLR", sv, build)
	if err == nil {
		s.log.Info("CLR answered", "imsi", sv.IMSI, "mme", sv.MMEHost, "cancellation", uint32(ct), "reattach", reattach)
	}
	return err
}

// InsertSubscriberData pushes the subscriber's current subscription to its
// serving MME with an IDR (TS 29.272 §5.2.2.1), the APNs naming the PGW of
// the serving row's region (All-APN-Configurations-Included-Indicator
// All_APN_CONFIGURATIONS_INCLUDED: the MME replaces what it had). Errors as
// for CancelLocation.
func (s *Server) InsertSubscriberData(ctx context.Context, imsi topology.IMSI) error {
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	sub, err := s.cfg.Subscribers.Subscriber(ctx, imsi)
	if err != nil {
		return fmt.Errorf("hss: insert subscriber data %s: %w", imsi, err)
	}
	sv, err := s.cfg.Subscribers.Serving(ctx, imsi)
	if errors.Is(err, registry.ErrNotFound) || (err == nil && sv.MMEHost == "") {
		return fmt.Errorf("hss: insert subscriber data %s: %w", imsi, ErrNotRegistered)
	}
	if err != nil {
		return fmt.Errorf("hss: insert subscriber data %s: %w", imsi, err)
	}
	regions := make([]topology.RegionID, len(sub.APNs))
	for i := range regions {
		regions[i] = sv.Region
	}
	if _, ok := s.cfg.PGWs[sv.Region]; !ok {
		return fmt.Errorf("hss: insert subscriber data %s: no PGW for region %s", imsi, sv.Region)
	}
	sd, err := s.subscriptionData(sub, regions)
	if err != nil {
		return err
	}
	build := func(hbh, e2e uint32) *diam.Message {
		m := s.newRequest(cmdIDR, hbh, e2e, sv)
		m.AddAVP(sd)
		m.NewAVP(avpIDRFlags, fV, vendor3GPP, datatype.Unsigned32(0))
		return m
	}
	return s.transact(ctx, "IDR", sv, build)
}

// newRequest starts an HSS-initiated S6a request to the serving MME
// (TS 29.272 §7.2.7 CLR, §7.2.9 IDR ABNF).
func (s *Server) newRequest(code, hbh, e2e uint32, sv registry.Serving) *diam.Message {
	m := diam.NewMessage(code, diam.RequestFlag|diam.ProxiableFlag, appS6a, hbh, e2e, dictionary)
	m.NewAVP(avp.SessionID, fM, 0, datatype.UTF8String(s.newSessionID()))
	m.AddAVP(s6aAppID())
	m.NewAVP(avp.AuthSessionState, fM, 0, datatype.Enumerated(1))
	m.NewAVP(avp.OriginHost, fM, 0, datatype.DiameterIdentity(s.cfg.OriginHost))
	m.NewAVP(avp.OriginRealm, fM, 0, datatype.DiameterIdentity(s.cfg.OriginRealm))
	m.NewAVP(avp.DestinationHost, fM, 0, datatype.DiameterIdentity(sv.MMEHost))
	realm := sv.MMERealm
	if realm == "" {
		if _, r, ok := strings.Cut(sv.MMEHost, "."); ok {
			realm = r
		}
	}
	m.NewAVP(avp.DestinationRealm, fM, 0, datatype.DiameterIdentity(realm))
	m.NewAVP(avp.UserName, fM, 0, datatype.UTF8String(sv.IMSI))
	return m
}

// transact sends a request to the serving MME and waits for the answer
// matched by Hop-by-Hop id, retransmitting with the T flag on timeout or
// after the connection failed (RFC 6733 §5.5.4), possibly over another
// connection to the same MME; the End-to-End id stays the same.
func (s *Server) transact(ctx context.Context, name string, sv registry.Serving, build func(hbh, e2e uint32) *diam.Message) error {
	e2e := s.e2e.Add(1)
	var lastErr error
	for attempt := 0; attempt <= s.cfg.RequestRetries; attempt++ {
		p := s.route(sv.MMEHost, sv.MMERealm)
		if p == nil {
			if lastErr == nil {
				s.met.outbound.WithLabelValues(name, "no_peer").Inc()
				return fmt.Errorf("hss: %s to %s: %w", name, sv.MMEHost, ErrNoPeer)
			}
			break
		}
		hbh := s.nextHopByHop()
		m := build(hbh, e2e)
		if attempt > 0 {
			m.Header.CommandFlags |= diam.RetransmittedFlag
		}
		ch, ok := p.await(hbh)
		if !ok {
			lastErr = errPeerClosed
			continue
		}
		if err := p.send(m); err != nil {
			p.forget(hbh)
			lastErr = err
			continue
		}
		t := s.cfg.Clock.NewTimer(s.cfg.RequestTimeout)
		select {
		case a, ok := <-ch:
			t.Stop()
			if !ok {
				lastErr = errPeerClosed
				continue
			}
			code, exp := answerResult(a)
			s.met.outbound.WithLabelValues(name, resultLabel(code, exp)).Inc()
			if code != codeSuccess || exp {
				return &AnswerError{Command: name, Code: code, Experimental: exp}
			}
			return nil
		case <-t.C():
			p.forget(hbh)
			lastErr = ErrTimeout
		case <-ctx.Done():
			t.Stop()
			p.forget(hbh)
			s.met.outbound.WithLabelValues(name, "cancelled").Inc()
			return fmt.Errorf("hss: %s to %s: %w", name, sv.MMEHost, ctx.Err())
		}
	}
	s.met.outbound.WithLabelValues(name, "timeout").Inc()
	return fmt.Errorf("hss: %s to %s: %w (%v)", name, sv.MMEHost, ErrTimeout, lastErr)
}

// answerResult reads Result-Code or Experimental-Result of an answer.
func answerResult(a *diam.Message) (uint32, bool) {
	if v, ok := u32(find(a.AVP, avp.ResultCode)); ok {
		return v, false
	}
	if e := find(a.AVP, avp.ExperimentalResult); e != nil {
		if v, ok := u32(find(children(e, a.Header.ApplicationID), avp.ExperimentalResultCode)); ok {
			return v, true
		}
	}
	return codeUnableToComply, false
}

// handlePUR answers a Purge-UE-Request (TS 29.272 §5.2.1.3.3): the
// registration is kept; PUA-Flags Freeze-M-TMSI when the purging MME is the
// registered one.
func (s *Server) handlePUR(ctx context.Context, m *diam.Message) (*diam.Message, result) {
	q, r, ok := parseCommon(m, false)
	if !ok {
		return s.answer(m, q.sid, r), r
	}
	if _, err := s.cfg.Subscribers.Subscriber(ctx, q.imsi); err != nil {
		r := registryResult(err)
		return s.answer(m, q.sid, r), r
	}
	flags := uint32(0)
	sv, err := s.cfg.Subscribers.Serving(ctx, q.imsi)
	switch {
	case err == nil:
		if strings.EqualFold(sv.MMEHost, q.originHost) {
			flags |= 1 // Freeze-M-TMSI (§7.3.48)
		}
	case errors.Is(err, registry.ErrNotFound):
	default:
		r := registryResult(err)
		return s.answer(m, q.sid, r), r
	}
	a := s.answer(m, q.sid, resultOK)
	a.NewAVP(avpPUAFlags, fV, vendor3GPP, datatype.Unsigned32(flags))
	return a, resultOK
}

// handleNOR answers a Notify-Request (TS 29.272 §5.2.5.1.3) with 2001 for a
// known subscriber; the PGW the MME reports is the one we named.
func (s *Server) handleNOR(ctx context.Context, m *diam.Message) (*diam.Message, result) {
	q, r, ok := parseCommon(m, false)
	if !ok {
		return s.answer(m, q.sid, r), r
	}
	if _, err := s.cfg.Subscribers.Subscriber(ctx, q.imsi); err != nil {
		r := registryResult(err)
		return s.answer(m, q.sid, r), r
	}
	return s.answer(m, q.sid, resultOK), resultOK
}
