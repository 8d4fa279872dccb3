package gtpc

import "errors"

var (
	// ErrClosed is returned by Request after Close.
	ErrClosed = errors.New("gtpc: endpoint closed")
	// ErrTimeout is returned by Request when no response arrived after N3
	// retransmissions (TS 29.274 §7.6, TS 29.060 §7.6).
	ErrTimeout = errors.New("gtpc: request timed out")
)
