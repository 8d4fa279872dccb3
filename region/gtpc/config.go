package gtpc

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Port is the registered GTP-C port (TS 29.274 §4.2, TS 29.060 §7.1).
const Port = 2123

// Config configures an Endpoint. Zero values take the documented defaults.
type Config struct {
	// Addrs are the node's GTP-C addresses, one UDP socket each. A zero
	// port means Port (2123). Specific addresses, not wildcards: a peer
	// expects the response from the address it sent the request to.
	// Required.
	Addrs []netip.AddrPort
	// StateDir holds the restart counter file, incremented on each New
	// (TS 23.007). Required.
	StateDir string
	// Workers is the number of request workers. Handlers block on the
	// registry (a subscriber lookup per Create), so the default is generous:
	// 64 (or 8×GOMAXPROCS if more); max 1024.
	Workers int
	// QueueLen bounds the requests waiting for a worker, in total; further
	// datagrams are dropped and counted (the peer retransmits). Default 8192.
	QueueLen int
	// ReadBuffer is SO_RCVBUF per socket in bytes. Default 4 MiB.
	ReadBuffer int
	// T3 is the retransmission timer of our requests (T3-RESPONSE, TS 29.274
	// §7.6, TS 29.060 §7.6). Default 3 s.
	T3 time.Duration
	// N3 is the number of retransmissions before a request times out
	// (N3-REQUESTS). Default 3.
	N3 int
	// ResponseTTL is how long a response is kept to replay on a duplicate
	// request; at least T3×(N3+1) of the slowest peer. Default 30 s.
	ResponseTTL time.Duration
	// MaxCachedResponses bounds the response cache; when full, the oldest
	// response goes. Default 262144 (≈ 8.7k requests/s for 30 s).
	MaxCachedResponses int
	// EchoInterval is how often each active peer gets an Echo Request
	// (TS 29.274 §7.1.1: not more often than every 60 s). Default 60 s;
	// negative disables our Echo Requests.
	EchoInterval time.Duration
	// PeerIdle is how long a peer stays in the path table without sending
	// us anything. Default 10 × EchoInterval (or 10 min).
	PeerIdle time.Duration
	// MaxPeers bounds the path table. Default 65536.
	MaxPeers int
	// OnPeerRestart, if set, is called after a peer's new Recovery value was
	// detected and the handler of its version removed the peer's sessions.
	// It runs on an endpoint goroutine and must not block for long.
	OnPeerRestart func(PeerRestart)
	// OnPathFailure, if set, is called when a peer left N3 Echo Requests
	// unanswered (TS 29.274 §7.6, TS 23.007).
	OnPathFailure func(v Version, peer netip.Addr)
	// Now is the clock for cache expiry and path tracking. Default time.Now.
	Now func() time.Time
	// Logger receives the endpoint's logs. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics. Nil means a private registry.
	Registerer prometheus.Registerer
}

func (c *Config) validate() error {
	if len(c.Addrs) == 0 {
		return errors.New("gtpc: config: no Addrs")
	}
	seen := map[netip.AddrPort]bool{}
	for i, a := range c.Addrs {
		if !a.Addr().IsValid() || a.Addr().IsUnspecified() {
			return fmt.Errorf("gtpc: config: Addrs[%d] %v: need a specific address", i, a)
		}
		if a.Port() == 0 {
			c.Addrs[i] = netip.AddrPortFrom(a.Addr(), Port)
		}
		c.Addrs[i] = netip.AddrPortFrom(c.Addrs[i].Addr().Unmap(), c.Addrs[i].Port())
		if seen[c.Addrs[i]] {
			return fmt.Errorf("gtpc: config: Addrs[%d] %v: duplicate", i, a)
		}
		seen[c.Addrs[i]] = true
	}
	if c.StateDir == "" {
		return errors.New("gtpc: config: StateDir is required (restart counter)")
	}
	if c.Workers <= 0 {
		c.Workers = max(64, 8*runtime.GOMAXPROCS(0))
	}
	if c.Workers > 1024 {
		c.Workers = 1024
	}
	if c.QueueLen <= 0 {
		c.QueueLen = 8192
	}
	if c.QueueLen < c.Workers {
		c.QueueLen = c.Workers
	}
	if c.ReadBuffer <= 0 {
		c.ReadBuffer = 4 << 20
	}
	if c.T3 <= 0 {
		c.T3 = 3 * time.Second
	}
	if c.N3 <= 0 {
		c.N3 = 3
	}
	if c.ResponseTTL <= 0 {
		c.ResponseTTL = 30 * time.Second
	}
	if c.MaxCachedResponses <= 0 {
		c.MaxCachedResponses = 262144
	}
	if c.EchoInterval == 0 {
		c.EchoInterval = 60 * time.Second
	}
	if c.PeerIdle <= 0 {
		c.PeerIdle = 10 * time.Minute
		if c.EchoInterval > 0 {
			c.PeerIdle = 10 * c.EchoInterval
		}
	}
	if c.MaxPeers <= 0 {
		c.MaxPeers = 65536
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	return nil
}

// PeerRestart reports a peer whose Recovery (restart counter) changed
// (TS 23.007; TS 29.060 §7.7.11, TS 29.274 §7.1.1).
type PeerRestart struct {
	Version  Version
	Peer     netip.Addr
	Old, New uint8
	// Removed is the number of sessions the handler removed for the peer.
	Removed int
}
