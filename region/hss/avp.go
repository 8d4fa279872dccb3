package hss

import (
	"encoding/binary"

	"github.com/fiorix/go-diameter/v4/diam"
	"github.com/fiorix/go-diameter/v4/diam/avp"
	"github.com/fiorix/go-diameter/v4/diam/datatype"
)

// Identifiers used on the wire.
const (
	appBase    = 0                    // RFC 6733 §2.4 Diameter common messages
	appS6a     = diam.TGPP_S6A_APP_ID // 16777251, TS 29.272 §7.1.8
	appRelay   = 0xffffffff           // RFC 6733 §2.4 relay
	vendor3GPP = 10415                // TS 29.272 §7.3: vendor of S6a AVPs

	cmdCER = 257 // RFC 6733 §5.3.1
	cmdDWR = 280 // RFC 6733 §5.5.1
	cmdDPR = 282 // RFC 6733 §5.4.1
	cmdULR = 316 // TS 29.272 §7.2.3
	cmdCLR = 317 // TS 29.272 §7.2.7
	cmdAIR = 318 // TS 29.272 §7.2.5
	cmdIDR = 319 // TS 29.272 §7.2.9
	cmdPUR = 321 // TS 29.272 §7.2.13
	cmdNOR = 323 // TS 29.272 §7.2.17

	hdrLen = 20 // RFC 6733 §3
)

// Result codes (RFC 6733 §7.1, TS 29.272 §7.4).
const (
	codeSuccess             = 2001
	codeCommandUnsupported  = 3001
	codeUnableToDeliver     = 3002
	codeTooBusy             = 3004
	codeAppUnsupported      = 3007
	codeUnknownPeer         = 3010
	codeAVPUnsupported      = 5001
	codeInvalidAVPValue     = 5004
	codeMissingAVP          = 5005
	codeNoCommonApplication = 5010
	codeUnsupportedVersion  = 5011
	codeUnableToComply      = 5012
	codeInvalidAVPLength    = 5014
	codeInvalidMessageLen   = 5015
	codeNoCommonSecurity    = 5017

	// Experimental-Result-Code values, vendor 10415 (TS 29.272 §7.4.3, §7.4.4).
	expAuthDataUnavailable = 4181
	expUserUnknown         = 5001
	expRoamingNotAllowed   = 5004
	expUnknownEPSSub       = 5420
	expRATNotAllowed       = 5421
)

// AVP codes not named (or misnamed/misvendored) by go-diameter's avp package.
const (
	avpServiceSelection   = 493  // RFC 5778 §6.2, vendor 0 (TS 29.272 §7.3.36)
	avpMIP6AgentInfo      = 486  // RFC 5447 §4.2.1, vendor 0
	avpMIPHomeAgentAddr   = 334  // RFC 4004 §7.4, vendor 0
	avpMIPHomeAgentHost   = 348  // RFC 4004 §7.11, vendor 0
	avpCLRFlags           = 1638 // TS 29.272 §7.3.152
	avpIDRFlags           = 1490 // TS 29.272 §7.3.103
	avpPURFlags           = 1635 // TS 29.272 §7.3.149
	avpPUAFlags           = 1442 // TS 29.272 §7.3.48
	avpNORFlags           = 1443 // TS 29.272 §7.3.49
	avpUTRANVector        = 1415 // TS 29.272 §7.3.19
	avpConfidentialityKey = 625  // TS 29.229 §6.3.27
	avpIntegrityKey       = 626  // TS 29.229 §6.3.28
)

// Flags of 3GPP AVPs (V and M) and of IETF AVPs (M).
const (
	fV  = avp.Vbit | avp.Mbit
	fM  = avp.Mbit
	fVo = avp.Vbit // V without M (e.g. optional 3GPP AVPs)
)

// find returns the first AVP with code among avps, whatever its vendor: S6a
// codes are unique across the vendors we meet, and peers disagree on the
// vendor of some (go-diameter's s6a_client sends RAT-Type without V).
func find(avps []*diam.AVP, code uint32) *diam.AVP {
	for _, a := range avps {
		if a != nil && a.Code == code {
			return a
		}
	}
	return nil
}

// children returns the AVPs inside a Grouped AVP, or nil.
func children(a *diam.AVP, app uint32) []*diam.AVP {
	if a == nil {
		return nil
	}
	switch d := a.Data.(type) {
	case *diam.GroupedAVP:
		return d.AVP
	case datatype.Unknown:
		// A grouped AVP whose vendor the dictionary does not know.
		g, err := diam.DecodeGroupedFromBytes([]byte(d), app, dictionary)
		if err != nil || g == nil {
			return nil
		}
		return g.AVP
	case datatype.Grouped:
		g, err := diam.DecodeGroupedFromBytes([]byte(d), app, dictionary)
		if err != nil || g == nil {
			return nil
		}
		return g.AVP
	}
	return nil
}

// octets returns the payload of an OctetString-like AVP.
func octets(a *diam.AVP) ([]byte, bool) {
	if a == nil {
		return nil, false
	}
	switch d := a.Data.(type) {
	case datatype.OctetString:
		return []byte(d), true
	case datatype.UTF8String:
		return []byte(d), true
	case datatype.DiameterIdentity:
		return []byte(d), true
	case datatype.DiameterURI:
		return []byte(d), true
	case datatype.Unknown:
		return []byte(d), true
	}
	return nil, false
}

// text returns the payload of a string-like AVP.
func text(a *diam.AVP) (string, bool) {
	b, ok := octets(a)
	return string(b), ok
}

// u32 returns the value of an Unsigned32/Enumerated/Integer32-like AVP.
func u32(a *diam.AVP) (uint32, bool) {
	if a == nil {
		return 0, false
	}
	switch d := a.Data.(type) {
	case datatype.Unsigned32:
		return uint32(d), true
	case datatype.Enumerated:
		return uint32(d), true
	case datatype.Integer32:
		return uint32(d), true
	case datatype.Unknown:
		if len(d) == 4 {
			return binary.BigEndian.Uint32(d), true
		}
	}
	return 0, false
}

func resultCode(code uint32) *diam.AVP {
	return diam.NewAVP(avp.ResultCode, fM, 0, datatype.Unsigned32(code))
}

// experimental is Experimental-Result (RFC 6733 §7.6) with vendor 10415,
// where TS 29.272 §7.4.1 puts every S6a-specific result.
func experimental(code uint32) *diam.AVP {
	return diam.NewAVP(avp.ExperimentalResult, fM, 0, &diam.GroupedAVP{AVP: []*diam.AVP{
		diam.NewAVP(avp.VendorID, fM, 0, datatype.Unsigned32(vendor3GPP)),
		diam.NewAVP(avp.ExperimentalResultCode, fM, 0, datatype.Unsigned32(code)),
	}})
}

// s6aAppID is the Vendor-Specific-Application-Id of S6a (TS 29.272 §7.1.8).
func s6aAppID() *diam.AVP {
	return diam.NewAVP(avp.VendorSpecificApplicationID, fM, 0, &diam.GroupedAVP{AVP: []*diam.AVP{
		diam.NewAVP(avp.VendorID, fM, 0, datatype.Unsigned32(vendor3GPP)),
		diam.NewAVP(avp.AuthApplicationID, fM, 0, datatype.Unsigned32(appS6a)),
	}})
}

// failedAVP wraps the offending AVP (or an example of a missing one) in
// Failed-AVP (RFC 6733 §7.5).
func failedAVP(a *diam.AVP) *diam.AVP {
	return diam.NewAVP(avp.FailedAVP, fM, 0, &diam.GroupedAVP{AVP: []*diam.AVP{a}})
}

// missing builds an example AVP of a missing AVP for Failed-AVP: the code
// with a zero-filled minimal payload (RFC 6733 §7.5).
func missing(code uint32, vendor uint32) *diam.AVP {
	flags := uint8(fM)
	if vendor != 0 {
		flags = fV
	}
	return diam.NewAVP(code, flags, vendor, datatype.OctetString(""))
}
