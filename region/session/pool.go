package session

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
)

// pool allocates UE IPv4 addresses from one prefix with a bitmap (one bit
// per address) and a rotating cursor, so a released address is reused as
// late as possible.
type pool struct {
	prefix netip.Prefix
	base   uint32
	size   uint32 // number of addresses in the prefix
	used   []uint64
	inUse  uint32
	cursor uint32
	free   uint32 // addresses allocatable in total
}

// newPool builds a pool over an IPv4 prefix of /8 to /30. The network
// address, the first host (the gateway on the SGi side, as osmo-ggsn's
// "ip ifconfig") and the broadcast address are never handed out.
func newPool(p netip.Prefix) (*pool, error) {
	p = p.Masked()
	if !p.Addr().Is4() {
		return nil, fmt.Errorf("session: pool %v: only IPv4 pools are supported", p)
	}
	if p.Bits() < 8 || p.Bits() > 30 {
		return nil, fmt.Errorf("session: pool %v: prefix length must be /8 to /30", p)
	}
	a := p.Addr().As4()
	size := uint32(1) << (32 - p.Bits())
	pl := &pool{prefix: p, base: binary.BigEndian.Uint32(a[:]), size: size, used: make([]uint64, (size+63)/64)}
	for _, off := range []uint32{0, 1, size - 1} {
		pl.used[off/64] |= 1 << (off % 64)
	}
	pl.free = size - 3
	pl.cursor = 2
	return pl, nil
}

func (p *pool) contains(a netip.Addr) bool { return p.prefix.Contains(a) }

// alloc returns a free address, or false if the pool is exhausted.
func (p *pool) alloc() (netip.Addr, bool) {
	if p.inUse >= p.free {
		return netip.Addr{}, false
	}
	words := uint32(len(p.used))
	w := p.cursor / 64
	// First the rest of the cursor's word, then whole words.
	for i := uint32(0); i <= words; i++ {
		word := p.used[w]
		if i == 0 {
			word |= (1 << (p.cursor % 64)) - 1 // bits before the cursor count as used
		}
		if free := ^word; free != 0 {
			b := uint32(bits.TrailingZeros64(free))
			off := w*64 + b
			if off < p.size {
				p.used[w] |= 1 << b
				p.inUse++
				p.cursor = off + 1
				if p.cursor >= p.size {
					p.cursor = 0
				}
				var a [4]byte
				binary.BigEndian.PutUint32(a[:], p.base+off)
				return netip.AddrFrom4(a), true
			}
		}
		w++
		if w >= words {
			w = 0
		}
	}
	return netip.Addr{}, false
}

// release frees an address handed out by alloc.
func (p *pool) release(a netip.Addr) {
	if !a.Is4() || !p.prefix.Contains(a) {
		return
	}
	b := a.As4()
	off := binary.BigEndian.Uint32(b[:]) - p.base
	if off == 0 || off == 1 || off == p.size-1 {
		return
	}
	if p.used[off/64]&(1<<(off%64)) != 0 {
		p.used[off/64] &^= 1 << (off % 64)
		p.inUse--
	}
}
