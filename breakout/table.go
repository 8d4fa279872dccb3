package breakout

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
)

// tableShards is the number of copy-on-write shards of each index. A write
// copies one shard (n/64 entries), so installs stay cheap with many
// tunnels; reads are one atomic load and one map lookup, with no lock.
const tableShards = 64

// tunnelCounters are shared by every version of a tunnel (a replacing
// Install keeps counting), updated atomically by the workers.
type tunnelCounters struct {
	packetsUp, bytesUp     atomic.Uint64
	packetsDown, bytesDown atomic.Uint64
	dropped                atomic.Uint64
}

func (c *tunnelCounters) snapshot() Counters {
	return Counters{
		PacketsUp: c.packetsUp.Load(), BytesUp: c.bytesUp.Load(),
		PacketsDown: c.packetsDown.Load(), BytesDown: c.bytesDown.Load(),
		Dropped: c.dropped.Load(),
	}
}

// tunnelEntry is immutable once published; Install replaces it.
type tunnelEntry struct {
	t      Tunnel
	peer   sockaddr // t.Peer, ready for sendmmsg
	peerIP netip.Addr
	ctr    *tunnelCounters
}

type teidMap = map[TEID]*tunnelEntry
type ueMap = map[netip.Addr]*tunnelEntry

// table indexes tunnels by local TEID (uplink) and by UE address
// (downlink). Readers never lock; writers serialize on mu.
type table struct {
	teid [tableShards]atomic.Pointer[teidMap]
	ue   [tableShards]atomic.Pointer[ueMap]

	mu    sync.Mutex // guards writes to teid and ue, and count
	count int
}

func teidShard(t TEID) int { return int((uint32(t) * 0x9e3779b1) >> 26) }

func ueShard(a netip.Addr) int {
	if a.Is4() {
		b := a.As4()
		return int(((uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])) * 0x9e3779b1) >> 26)
	}
	b := a.As16()
	var h uint32
	for i := 0; i < 16; i += 4 {
		h ^= uint32(b[i])<<24 | uint32(b[i+1])<<16 | uint32(b[i+2])<<8 | uint32(b[i+3])
	}
	return int((h * 0x9e3779b1) >> 26)
}

func (tb *table) byTEID(t TEID) *tunnelEntry {
	m := tb.teid[teidShard(t)].Load()
	if m == nil {
		return nil
	}
	return (*m)[t]
}

func (tb *table) byUE(a netip.Addr) *tunnelEntry {
	m := tb.ue[ueShard(a)].Load()
	if m == nil {
		return nil
	}
	return (*m)[a]
}

// install publishes e, replacing the tunnel with the same local TEID, and
// returns the replaced entry (nil if new).
func (tb *table) install(e *tunnelEntry) (*tunnelEntry, error) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	old := tb.byTEID(e.t.LocalTEID)
	if o := tb.byUE(e.t.UE); o != nil && o.t.LocalTEID != e.t.LocalTEID {
		return nil, fmt.Errorf("breakout: install TEID %#x: UE %v: %w (TEID %#x)", uint32(e.t.LocalTEID), e.t.UE, ErrAddressInUse, uint32(o.t.LocalTEID))
	}
	if old != nil {
		e.ctr = old.ctr
		if old.t.UE != e.t.UE {
			tb.setUE(old.t.UE, nil)
		}
	} else {
		e.ctr = new(tunnelCounters)
		tb.count++
	}
	tb.setTEID(e.t.LocalTEID, e)
	tb.setUE(e.t.UE, e)
	return old, nil
}

func (tb *table) remove(t TEID) *tunnelEntry {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	old := tb.byTEID(t)
	if old == nil {
		return nil
	}
	tb.setTEID(t, nil)
	if o := tb.byUE(old.t.UE); o == old {
		tb.setUE(old.t.UE, nil)
	}
	tb.count--
	return old
}

// setTEID copies one shard with t set to e (deleted if e is nil). mu held.
func (tb *table) setTEID(t TEID, e *tunnelEntry) {
	p := &tb.teid[teidShard(t)]
	var n teidMap
	if m := p.Load(); m != nil {
		n = make(teidMap, len(*m)+1)
		for k, v := range *m {
			n[k] = v
		}
	} else {
		n = make(teidMap, 1)
	}
	if e == nil {
		delete(n, t)
	} else {
		n[t] = e
	}
	p.Store(&n)
}

func (tb *table) setUE(a netip.Addr, e *tunnelEntry) {
	p := &tb.ue[ueShard(a)]
	var n ueMap
	if m := p.Load(); m != nil {
		n = make(ueMap, len(*m)+1)
		for k, v := range *m {
			n[k] = v
		}
	} else {
		n = make(ueMap, 1)
	}
	if e == nil {
		delete(n, a)
	} else {
		n[a] = e
	}
	p.Store(&n)
}

func (tb *table) len() int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.count
}

// each calls f for every tunnel of a consistent-per-shard snapshot.
func (tb *table) each(f func(*tunnelEntry) bool) {
	for i := range tb.teid {
		m := tb.teid[i].Load()
		if m == nil {
			continue
		}
		for _, e := range *m {
			if !f(e) {
				return
			}
		}
	}
}
