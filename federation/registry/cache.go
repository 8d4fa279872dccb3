package registry

import (
	"sync"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

// cache is the per-node read-through cache of profiles and decrypted keys
// (memory only, never persisted). Staleness is bounded by the TTL, and
// revision invalidations (Store.Invalidate, from the federation's
// broadcasts) drop older entries at once (notes/registry.md §4). Expired
// entries stay until evicted: they answer when the database is unreachable.
// It holds at most max entries (random eviction per shard).
type cache struct {
	shards [cacheShards]cacheShard
}

const cacheShards = 32

type cacheShard struct {
	mu  sync.Mutex
	max int
	m   map[topology.IMSI]*centry
}

type centry struct {
	valid  bool // false: an invalidation mark only
	sub    Subscriber
	auth   AuthData
	at     time.Time
	minRev int64 // entries older than this revision are refused
}

func newCache(max int) *cache {
	c := &cache{}
	per := max / cacheShards
	if per < 1 {
		per = 1
	}
	for i := range c.shards {
		c.shards[i] = cacheShard{max: per, m: make(map[topology.IMSI]*centry)}
	}
	return c
}

func (c *cache) shard(imsi topology.IMSI) *cacheShard {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(imsi); i++ {
		h ^= uint32(imsi[i])
		h *= 16777619
	}
	return &c.shards[h%cacheShards]
}

// get returns the cached profile and keys; fresh tells whether it is within
// ttl of now.
func (c *cache) get(imsi topology.IMSI, now time.Time, ttl time.Duration) (sub Subscriber, auth AuthData, fresh, ok bool) {
	sh := c.shard(imsi)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[imsi]
	if e == nil || !e.valid {
		return Subscriber{}, AuthData{}, false, false
	}
	return e.sub, e.auth, now.Sub(e.at) < ttl, true
}

// put stores what was read from the database at now, unless an
// invalidation for a newer revision arrived meanwhile.
func (c *cache) put(sub Subscriber, auth AuthData, now time.Time) {
	sh := c.shard(sub.IMSI)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[sub.IMSI]
	if e != nil {
		if sub.Revision < e.minRev || (e.valid && sub.Revision < e.sub.Revision) {
			return
		}
		e.valid, e.sub, e.auth, e.at = true, sub, auth, now
		return
	}
	sh.evictLocked()
	sh.m[sub.IMSI] = &centry{valid: true, sub: sub, auth: auth, at: now}
}

// invalidate drops the entry unless it already holds revision rev or newer,
// and refuses older revisions from then on.
func (c *cache) invalidate(imsi topology.IMSI, rev int64) {
	sh := c.shard(imsi)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[imsi]
	if e == nil {
		sh.evictLocked()
		sh.m[imsi] = &centry{minRev: rev}
		return
	}
	if e.valid && e.sub.Revision >= rev {
		return
	}
	e.valid = false
	e.sub, e.auth = Subscriber{}, AuthData{}
	e.minRev = max(e.minRev, rev)
}

// invalidateCached is invalidate for an entry that exists; it leaves no
// mark otherwise (bulk import: no reader can hold an older revision of a
// subscriber this node never cached, except a read in flight, which the
// TTL bounds).
func (c *cache) invalidateCached(imsi topology.IMSI, rev int64) {
	sh := c.shard(imsi)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.m[imsi]; e != nil && !(e.valid && e.sub.Revision >= rev) {
		e.valid = false
		e.sub, e.auth = Subscriber{}, AuthData{}
		e.minRev = max(e.minRev, rev)
	}
}

// drop forgets imsi entirely (deleted subscriber).
func (c *cache) drop(imsi topology.IMSI) {
	sh := c.shard(imsi)
	sh.mu.Lock()
	delete(sh.m, imsi)
	sh.mu.Unlock()
}

func (sh *cacheShard) evictLocked() {
	for len(sh.m) >= sh.max {
		for k := range sh.m { // map order is unspecified: a random victim
			delete(sh.m, k)
			break
		}
	}
}

func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.Lock()
		n += len(c.shards[i].m)
		c.shards[i].mu.Unlock()
	}
	return n
}
