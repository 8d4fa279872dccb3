package breakout

import "errors"

// ErrUnknownTEID is returned when a tunnel with the given TEID is not installed.
var ErrUnknownTEID = errors.New("breakout: unknown TEID")

// ErrAddressInUse is returned by Install when the tunnel's UE address is
// already bound to another local TEID.
var ErrAddressInUse = errors.New("breakout: UE address in use")

// ErrBadTunnel is returned by Install for a tunnel that cannot be served:
// TEID 0, an invalid peer or UE address, or a peer of the other IP family
// than the node's GTP-U endpoint.
var ErrBadTunnel = errors.New("breakout: bad tunnel")

// ErrClosed is returned by methods called after Close.
var ErrClosed = errors.New("breakout: closed")

// ErrNeedNetAdmin is wrapped by New when the process lacks the privilege
// the tun driver needs: root or CAP_NET_ADMIN, for /dev/net/tun, netlink
// (routes, link state) and nftables (source NAT).
var ErrNeedNetAdmin = errors.New("breakout: the tun egress needs root or CAP_NET_ADMIN (for /dev/net/tun, netlink routes and nftables NAT)")
