package hss

import (
	"net"
	"strconv"
	"time"

	"github.com/fiorix/go-diameter/v4/diam"
	"github.com/fiorix/go-diameter/v4/diam/avp"
	"github.com/fiorix/go-diameter/v4/diam/datatype"
)

func commandName(code uint32) string {
	switch code {
	case cmdCER:
		return "CER"
	case cmdDWR:
		return "DWR"
	case cmdDPR:
		return "DPR"
	case cmdULR:
		return "ULR"
	case cmdCLR:
		return "CLR"
	case cmdAIR:
		return "AIR"
	case cmdIDR:
		return "IDR"
	case cmdPUR:
		return "PUR"
	case cmdNOR:
		return "NOR"
	}
	return "other" // bounded label cardinality
}

// errorAnswer builds an answer to a request that was not (fully) decoded,
// from its raw header: Session-Id when found, Origin-Host/Realm,
// Result-Code, the E bit for protocol errors (3xxx, RFC 6733 §7.1.3) and a
// Failed-AVP naming the offending AVP when known (RFC 6733 §7.5).
func (p *peer) errorAnswer(h header, frame []byte, code, failed uint32) []byte {
	flags := h.Flags &^ (diam.RequestFlag | diam.RetransmittedFlag)
	if code >= 3000 && code < 4000 {
		flags |= diam.ErrorFlag
	}
	a := diam.NewMessage(h.Code, flags, h.App, h.HopByHop, h.EndToEnd, dictionary)
	if len(frame) > hdrLen {
		if sid, ok := sessionIDRaw(frame[hdrLen:]); ok {
			a.NewAVP(avp.SessionID, fM, 0, datatype.UTF8String(sid))
		}
	}
	a.NewAVP(avp.OriginHost, fM, 0, datatype.DiameterIdentity(p.s.cfg.OriginHost))
	a.NewAVP(avp.OriginRealm, fM, 0, datatype.DiameterIdentity(p.s.cfg.OriginRealm))
	a.AddAVP(resultCode(code))
	if failed != 0 {
		a.AddAVP(failedAVP(diam.NewAVP(failed, fM, 0, datatype.OctetString(""))))
	}
	b, err := a.Serialize()
	if err != nil {
		return nil
	}
	return b
}

// handleCER implements the responder side of the capabilities exchange
// (RFC 6733 §5.3): the peer must be on the allowlist (else 3010
// DIAMETER_UNKNOWN_PEER and close, §5.3.1), name Origin-Host/Realm (5005),
// support S6a (5010 DIAMETER_NO_COMMON_APPLICATION) and ask for no in-band
// security (5017). The CEA advertises S6a only.
func (p *peer) handleCER(m *diam.Message) {
	host, okH := text(find(m.AVP, avp.OriginHost))
	realm, okR := text(find(m.AVP, avp.OriginRealm))
	fail := func(code uint32, failed *diam.AVP, reason string) {
		p.s.met.rejected.WithLabelValues(reason).Inc()
		p.s.met.requests.WithLabelValues("CER", resultLabel(code, false)).Inc()
		p.s.log.Info("CER rejected", "peer", p.src, "peer_host", host, "peer_realm", realm, "result", code)
		a := p.cea(m, code)
		if failed != nil {
			a.AddAVP(failedAVP(failed))
		}
		p.send(a)
		p.closeAfterFlush()
	}
	switch {
	case !okH || host == "":
		fail(codeMissingAVP, missing(avp.OriginHost, 0), "cer_missing_avp")
		return
	case !okR || realm == "":
		fail(codeMissingAVP, missing(avp.OriginRealm, 0), "cer_missing_avp")
		return
	case !p.s.allowed(host, realm, p.src.Addr()):
		fail(codeUnknownPeer, nil, "unknown_peer")
		return
	}
	s6a := false
	for _, a := range m.AVP {
		switch a.Code {
		case avp.AuthApplicationID, avp.AcctApplicationID:
			if v, _ := u32(a); v == appS6a || v == appRelay {
				s6a = true
			}
		case avp.VendorSpecificApplicationID:
			for _, c := range children(a, appBase) {
				if c.Code == avp.AuthApplicationID || c.Code == avp.AcctApplicationID {
					if v, _ := u32(c); v == appS6a {
						s6a = true
					}
				}
			}
		}
	}
	if !s6a {
		fail(codeNoCommonApplication, nil, "no_common_application")
		return
	}
	inband, clear := false, false
	for _, a := range m.AVP {
		if a.Code == avp.InbandSecurityID {
			inband = true
			if v, _ := u32(a); v == 0 {
				clear = true
			}
		}
	}
	if inband && !clear {
		fail(codeNoCommonSecurity, nil, "no_common_security")
		return
	}
	p.mu.Lock()
	first := !p.open
	p.open, p.host, p.realm = true, host, realm
	p.mu.Unlock()
	p.nc.SetReadDeadline(time.Time{})
	if err := p.send(p.cea(m, codeSuccess)); err != nil {
		return
	}
	p.s.met.requests.WithLabelValues("CER", "2001").Inc()
	if first {
		p.s.met.peers.Inc()
		p.s.log.Info("peer open", "peer", p.src, "peer_host", host, "peer_realm", realm)
		p.s.wg.Add(1)
		go p.watchdog()
	}
}

// cea builds a CEA (RFC 6733 §5.3.2) advertising S6a only
// (Vendor-Specific-Application-Id {10415, 16777251}, TS 29.272 §7.1.8).
func (p *peer) cea(req *diam.Message, code uint32) *diam.Message {
	a := req.Answer(0)
	if code >= 3000 && code < 4000 {
		a.Header.CommandFlags |= diam.ErrorFlag
	}
	a.AddAVP(resultCode(code))
	a.NewAVP(avp.OriginHost, fM, 0, datatype.DiameterIdentity(p.s.cfg.OriginHost))
	a.NewAVP(avp.OriginRealm, fM, 0, datatype.DiameterIdentity(p.s.cfg.OriginRealm))
	ip := net.IPv4(127, 0, 0, 1)
	if ta, ok := p.nc.LocalAddr().(*net.TCPAddr); ok {
		ip = ta.IP
	}
	a.NewAVP(avp.HostIPAddress, fM, 0, datatype.Address(ip))
	a.NewAVP(avp.VendorID, fM, 0, datatype.Unsigned32(0))
	a.NewAVP(avp.ProductName, 0, 0, datatype.UTF8String(p.s.cfg.ProductName))
	a.NewAVP(avp.OriginStateID, fM, 0, datatype.Unsigned32(p.s.stateID))
	if code == codeSuccess {
		a.NewAVP(avp.SupportedVendorID, fM, 0, datatype.Unsigned32(vendor3GPP))
		a.AddAVP(s6aAppID())
	}
	return a
}

// handleDWR answers a peer's watchdog (RFC 6733 §5.5.2) on the reader.
func (p *peer) handleDWR(m *diam.Message) {
	a := m.Answer(0)
	a.AddAVP(resultCode(codeSuccess))
	a.NewAVP(avp.OriginHost, fM, 0, datatype.DiameterIdentity(p.s.cfg.OriginHost))
	a.NewAVP(avp.OriginRealm, fM, 0, datatype.DiameterIdentity(p.s.cfg.OriginRealm))
	a.NewAVP(avp.OriginStateID, fM, 0, datatype.Unsigned32(p.s.stateID))
	p.s.met.watchdogs.WithLabelValues("dwr_received").Inc()
	p.send(a)
}

// handleDPR answers DPR with DPA 2001 and closes once it is written
// (RFC 6733 §5.4.2).
func (p *peer) handleDPR(m *diam.Message) {
	cause := "?"
	if v, ok := u32(find(m.AVP, avp.DisconnectCause)); ok {
		cause = strconv.FormatUint(uint64(v), 10)
	}
	host, _, _ := p.identity()
	p.s.log.Info("peer disconnecting", "peer", p.src, "peer_host", host, "cause", cause)
	a := m.Answer(0)
	a.AddAVP(resultCode(codeSuccess))
	a.NewAVP(avp.OriginHost, fM, 0, datatype.DiameterIdentity(p.s.cfg.OriginHost))
	a.NewAVP(avp.OriginRealm, fM, 0, datatype.DiameterIdentity(p.s.cfg.OriginRealm))
	p.s.met.requests.WithLabelValues("DPR", "2001").Inc()
	p.send(a)
	p.closeAfterFlush()
}
