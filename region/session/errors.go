package session

import "errors"

var (
	// ErrNoPool is returned by Create when the region has no address pool
	// for the APN (PGW: cause 78, GGSN: cause 219).
	ErrNoPool = errors.New("session: no address pool for APN")
	// ErrPoolExhausted is returned by Create when the APN's pools are full
	// (PGW: cause 84, GGSN: cause 211).
	ErrPoolExhausted = errors.New("session: all dynamic addresses are occupied")
	// ErrNoTEID is returned when the node's 2^24 TEIDs are all in use.
	ErrNoTEID = errors.New("session: no free TEID")
	// ErrNotFound is returned when no session has the given key.
	ErrNotFound = errors.New("session: not found")
	// ErrInvalid is returned for parameters that cannot make a session.
	ErrInvalid = errors.New("session: invalid parameters")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("session: table closed")
)
