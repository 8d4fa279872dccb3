package breakout

import "errors"

// ErrUnknownTEID is returned when a tunnel with the given TEID is not installed.
var ErrUnknownTEID = errors.New("breakout: unknown TEID")
