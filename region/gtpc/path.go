package gtpc

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// touchPeer records that a peer sent us something (path management, TS
// 29.274 §7.1.1: Echo only to peers we have a path with).
func (e *Endpoint) touchPeer(v Version, from netip.AddrPort, s *socket) {
	k := peerKey{v: v, addr: from.Addr()}
	now := e.cfg.Now().UnixNano()
	e.peersMu.Lock()
	p := e.peers[k]
	if p == nil {
		if len(e.peers) >= e.cfg.MaxPeers {
			e.peersMu.Unlock()
			return
		}
		p = &peerState{}
		e.peers[k] = p
	}
	p.lastSeen, p.local, p.pathAlive = now, s, true
	if from.Port() != 0 {
		p.port = from.Port()
	}
	e.peersMu.Unlock()
}

// ObserveRecovery records the Recovery (restart counter) a peer sent in an
// Echo, Create Session Request or Create PDP Context Request (TS 29.274
// §7.1.1, TS 29.060 §7.7.11). If it differs from the value seen before,
// the peer restarted (TS 23.007): the handler of that
// version removes the peer's sessions, OnPeerRestart is called, and
// ObserveRecovery returns true. Handlers call it before creating a session
// so that the new session survives the clean-up.
func (e *Endpoint) ObserveRecovery(v Version, peer netip.Addr, rc uint8) bool {
	peer = peer.Unmap()
	k := peerKey{v: v, addr: peer}
	e.peersMu.Lock()
	p := e.peers[k]
	if p == nil {
		if len(e.peers) >= e.cfg.MaxPeers {
			e.peersMu.Unlock()
			return false
		}
		p = &peerState{lastSeen: e.cfg.Now().UnixNano(), port: Port}
		e.peers[k] = p
	}
	if !p.known {
		p.known, p.recovery = true, rc
		e.peersMu.Unlock()
		return false
	}
	if p.recovery == rc {
		e.peersMu.Unlock()
		return false
	}
	ev := PeerRestart{Version: v, Peer: peer, Old: p.recovery, New: rc}
	p.recovery = rc
	e.peersMu.Unlock()
	if h := e.handler(v); h != nil {
		ev.Removed = h.PeerRestarted(ev)
	}
	e.m.peerRestarts.WithLabelValues(v.String()).Inc()
	e.cfg.Logger.Warn("gtpc: peer restarted", "version", v, "peer", peer, "old", ev.Old, "new", ev.New,
		"sessions_removed", ev.Removed)
	if e.cfg.OnPeerRestart != nil {
		e.cfg.OnPeerRestart(ev)
	}
	return true
}

// PeerRecovery returns the last Recovery value seen from a peer.
func (e *Endpoint) PeerRecovery(v Version, peer netip.Addr) (uint8, bool) {
	e.peersMu.Lock()
	defer e.peersMu.Unlock()
	p := e.peers[peerKey{v: v, addr: peer.Unmap()}]
	if p == nil || !p.known {
		return 0, false
	}
	return p.recovery, true
}

// Echo sends one Echo Request to peer (T3/N3 apply) and returns the peer's
// Recovery value, which it also feeds to ObserveRecovery.
func (e *Endpoint) Echo(ctx context.Context, v Version, local netip.Addr, peer netip.AddrPort) (uint8, error) {
	resp, err := e.Request(ctx, v, local, peer, func(seq uint32) ([]byte, error) {
		return encodeEcho(v, msgEchoRequest, seq, e.restart), nil
	})
	if err != nil {
		return 0, err
	}
	h, err := ParseHeader(resp)
	if err != nil {
		return 0, err
	}
	rc, ok := recoveryOf(v, resp, h)
	if !ok {
		return 0, ErrMalformed
	}
	e.ObserveRecovery(v, peer.Addr(), rc)
	return rc, nil
}

// echoLoop sends Echo Requests to every active peer each EchoInterval
// (TS 29.274 §7.1.1, TS 29.060 §7.2.1) and reports paths that stay silent
// for N3 retransmissions.
func (e *Endpoint) echoLoop() {
	defer e.bg.Done()
	t := time.NewTicker(e.cfg.EchoInterval)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, 32)
	for {
		select {
		case <-e.done:
			cancel()
			return
		case <-t.C:
		}
		type target struct {
			k    peerKey
			addr netip.AddrPort
			loc  netip.Addr
		}
		var ts []target
		e.peersMu.Lock()
		for k, p := range e.peers {
			if p.echoing || p.local == nil {
				continue
			}
			p.echoing = true
			ts = append(ts, target{k: k, addr: netip.AddrPortFrom(k.addr, Port), loc: p.local.addr.Addr()})
		}
		e.peersMu.Unlock()
		for _, tg := range ts {
			select {
			case sem <- struct{}{}:
			case <-e.done:
				cancel()
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				_, err := e.Echo(ctx, tg.k.v, tg.loc, tg.addr)
				e.peersMu.Lock()
				p := e.peers[tg.k]
				failed := false
				if p != nil {
					p.echoing = false
					if err != nil && p.pathAlive {
						p.pathAlive, failed = false, true
					}
				}
				e.peersMu.Unlock()
				if failed && ctx.Err() == nil {
					e.m.pathFailures.WithLabelValues(tg.k.v.String()).Inc()
					e.cfg.Logger.Warn("gtpc: path failure", "version", tg.k.v, "peer", tg.k.addr, "err", err)
					if e.cfg.OnPathFailure != nil {
						e.cfg.OnPathFailure(tg.k.v, tg.k.addr)
					}
				}
			}()
		}
	}
}
