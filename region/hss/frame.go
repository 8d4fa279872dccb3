package hss

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/fiorix/go-diameter/v4/diam"
	"github.com/fiorix/go-diameter/v4/diam/datatype"
	"github.com/fiorix/go-diameter/v4/diam/dict"
)

// dictionary is go-diameter's built-in dictionary (base, S6a and more),
// used read-only: nothing in this package loads into it.
var dictionary = dict.Default

// header is the fixed Diameter header (RFC 6733 §3), read by us before the
// library sees a byte, so that a bad length can neither desynchronise the
// stream nor make the library allocate 4 GiB (notes/diameter.md §6).
type header struct {
	Version  uint8
	Length   uint32
	Flags    uint8
	Code     uint32
	App      uint32
	HopByHop uint32
	EndToEnd uint32
}

func parseHeader(b []byte) header {
	_ = b[19]
	return header{
		Version:  b[0],
		Length:   uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]),
		Flags:    b[4],
		Code:     uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7]),
		App:      binary.BigEndian.Uint32(b[8:12]),
		HopByHop: binary.BigEndian.Uint32(b[12:16]),
		EndToEnd: binary.BigEndian.Uint32(b[16:20]),
	}
}

func (h header) request() bool { return h.Flags&diam.RequestFlag != 0 }

// checkFraming validates what the stream framing depends on. A failure means
// the connection cannot continue (RFC 6733 §3: 5011 for a version other
// than 1, 5015 for a length that is not a multiple of 4, under 20 or beyond
// our maximum).
func (h header) checkFraming(max int) uint32 {
	switch {
	case h.Version != 1:
		return codeUnsupportedVersion
	case h.Length < hdrLen || h.Length%4 != 0 || h.Length > uint32(max):
		return codeInvalidMessageLen
	}
	return 0
}

// decodeError classifies why a well-framed message could not be decoded.
type decodeError struct {
	Code    uint32 // the Result-Code to answer a request with
	AVPCode uint32 // offending AVP, when known
	Err     error
}

func (e *decodeError) Error() string { return fmt.Sprintf("hss: decode: %v", e.Err) }
func (e *decodeError) Unwrap() error { return e.Err }

var errPanic = errors.New("decoder panic")

// decode parses one complete, framed message (header included) with
// go-diameter's codec and dictionary. It never panics: go-diameter v4.3.0
// dereferences nil on some malformed AVPs (notes/diameter.md T10/T15). The
// message may be returned together with an error when only AVP values were
// bad (m.DecodeErr).
func decode(frame []byte) (m *diam.Message, err error) {
	if len(frame) < hdrLen {
		return nil, &decodeError{Code: codeInvalidMessageLen, Err: errors.New("short header")}
	}
	h := parseHeader(frame)
	if h.Length != uint32(len(frame)) {
		return nil, &decodeError{Code: codeInvalidMessageLen, Err: fmt.Errorf("length %d, frame %d", h.Length, len(frame))}
	}
	if _, err := dictionary.FindCommand(h.App, h.Code); err != nil {
		code := uint32(codeCommandUnsupported)
		if h.App != appBase && h.App != appS6a {
			code = codeAppUnsupported
		}
		return nil, &decodeError{Code: code, Err: err}
	}
	// Walk the AVP framing ourselves first: a length overrun is then
	// reported as 5014 with the AVP's code, and never reaches the library's
	// fragile path.
	if code, err := walkAVPs(frame[hdrLen:], h.App, 0); err != nil {
		return nil, &decodeError{Code: codeInvalidAVPLength, AVPCode: code, Err: err}
	}
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, &decodeError{Code: codeInvalidAVPLength, Err: fmt.Errorf("%w: %v", errPanic, r)}
		}
	}()
	m, err = diam.ReadMessage(bytes.NewReader(frame), dictionary)
	if err != nil {
		if m != nil && m.Header != nil && errors.Is(err, m.DecodeErr) {
			return m, &decodeError{Code: codeInvalidAVPValue, Err: err}
		}
		return nil, &decodeError{Code: codeInvalidAVPLength, Err: err}
	}
	return m, nil
}

// walkAVPs checks the AVP framing of b (RFC 6733 §4.1) before the library
// decodes it: every AVP header complete, the vendor field present when V is
// set, lengths within b, and the payload length right for the AVP's type in
// the dictionary (go-diameter silently decodes an 8-octet Unsigned32 as 0
// and then mis-walks the rest of the message). Grouped AVPs are checked
// recursively. It returns the offending AVP code.
func walkAVPs(b []byte, app uint32, depth int) (uint32, error) {
	if depth > 16 {
		return 0, errors.New("AVPs nested too deep")
	}
	for n := 0; n < len(b); {
		rest := b[n:]
		if len(rest) < 8 {
			return 0, fmt.Errorf("AVP header truncated at offset %d", n)
		}
		code := binary.BigEndian.Uint32(rest[0:4])
		flags := rest[4]
		l := int(rest[5])<<16 | int(rest[6])<<8 | int(rest[7])
		hl := 8
		var vendor uint32
		if flags&0x80 != 0 {
			hl = 12
			if len(rest) >= 12 {
				vendor = binary.BigEndian.Uint32(rest[8:12])
			}
		}
		if l < hl || l > len(rest) {
			return code, fmt.Errorf("AVP %d length %d at offset %d (%d left)", code, l, n, len(rest))
		}
		payload := rest[hl:l]
		if d, err := dictionary.FindAVPByCode(app, code, vendor); err == nil && d != nil {
			if bad := badLength(d.Data.Type, payload); bad {
				return code, fmt.Errorf("AVP %d (%s): %d octets invalid for its type", code, d.Name, len(payload))
			}
			if d.Data.Type == datatype.GroupedType {
				if c, err := walkAVPs(payload, app, depth+1); err != nil {
					return c, err
				}
			}
		}
		n += (l + 3) &^ 3
	}
	return 0, nil
}

func badLength(t datatype.TypeID, p []byte) bool {
	switch t {
	case datatype.Unsigned32Type, datatype.Integer32Type, datatype.EnumeratedType,
		datatype.Float32Type, datatype.TimeType, datatype.IPv4Type:
		return len(p) != 4
	case datatype.Unsigned64Type, datatype.Integer64Type, datatype.Float64Type:
		return len(p) != 8
	case datatype.IPv6Type:
		return len(p) != 16
	case datatype.AddressType:
		if len(p) < 3 {
			return true
		}
		switch binary.BigEndian.Uint16(p) {
		case 1:
			return len(p) != 6
		case 2:
			return len(p) != 18
		case 0, 0xffff:
			return true
		}
	}
	return false
}

// sessionIDRaw extracts the Session-Id (code 263) from raw AVPs without
// the dictionary, for answers to messages that could not be decoded.
func sessionIDRaw(b []byte) (string, bool) {
	for n := 0; n+8 <= len(b); {
		code := binary.BigEndian.Uint32(b[n : n+4])
		flags := b[n+4]
		l := int(b[n+5])<<16 | int(b[n+6])<<8 | int(b[n+7])
		hl := 8
		if flags&0x80 != 0 {
			hl = 12
		}
		if l < hl || n+l > len(b) {
			return "", false
		}
		if code == 263 && flags&0x80 == 0 {
			return string(b[n+hl : n+l]), true
		}
		n += (l + 3) &^ 3
	}
	return "", false
}
