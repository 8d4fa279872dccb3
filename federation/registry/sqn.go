package registry

import (
	"context"
	"fmt"
	"sync"

	"github.com/rendezvous-core/rendezvous/topology"
)

// SQN allocation, TS 33.102 Annex C (not time-based, Annex C.1.1 profile 2
// with the IND array of C.1.2/C.3.2; IND = 5 bits, so SQN = SEQ << 5 | IND
// on 48 bits).
//
// Each region owns a slice of IND values (Config.INDSlices) and a SEQ
// counter per subscriber: the row sqn(imsi, region). A region only ever
// writes its own row, so no allocation writes across regions. A node
// reserves SEQs from its region's row in blocks (seq += SQNBlock, one
// statement) and issues them from memory, each SQN with a fresh SEQ and IND
// = first + SEQ mod count, cycling through the slice. Because SEQs from one
// row never repeat and each node issues its blocks in increasing order, an
// SQN is never issued twice and, for each IND slot the USIM tracks
// (SEQ_MS[IND], C.2.2), never goes backwards — whatever other regions do.
// Unused SEQs of a dropped block are skipped, which the USIM tolerates
// (C.2.2 only requires SEQ > SEQ_MS; the optional Δ check allows 2^28).

type sqnKey struct {
	imsi   topology.IMSI
	region topology.RegionID
}

type sqnBlock struct {
	mu         sync.Mutex
	next, last uint64 // SEQs next..last are reserved and unused (empty if next > last)
	dead       bool   // evicted or dropped: get a new block
}

// sqnBlocks holds this node's reserved blocks, at most max of them.
type sqnBlocks struct {
	mu  sync.Mutex
	max int
	m   map[sqnKey]*sqnBlock
}

func newSQNBlocks(max int) *sqnBlocks {
	return &sqnBlocks{max: max, m: make(map[sqnKey]*sqnBlock)}
}

func (bs *sqnBlocks) get(k sqnKey) *sqnBlock {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if b := bs.m[k]; b != nil {
		return b
	}
	if len(bs.m) >= bs.max {
		tries := 0
		for vk, v := range bs.m {
			if tries++; tries > 8 {
				break // all busy: overshoot the bound by the in-flight ones
			}
			if v.mu.TryLock() {
				v.dead = true
				v.mu.Unlock()
				delete(bs.m, vk)
				break
			}
		}
	}
	b := &sqnBlock{next: 1, last: 0}
	bs.m[k] = b
	return b
}

func (bs *sqnBlocks) drop(k sqnKey) {
	bs.mu.Lock()
	b := bs.m[k]
	delete(bs.m, k)
	bs.mu.Unlock()
	if b != nil {
		b.mu.Lock()
		b.dead = true
		b.mu.Unlock()
	}
}

func (bs *sqnBlocks) dropIMSI(imsi topology.IMSI, regions map[topology.RegionID][2]uint8) {
	for r := range regions {
		bs.drop(sqnKey{imsi, r})
	}
}

// MaxSQNs is the most SQNs one NextSQNs call returns.
const MaxSQNs = 256

// NextSQNs returns n fresh 48-bit SQNs (SEQ << 5 | IND) of imsi from
// region's IND slice, in increasing order. It writes only region's counter
// row, and only when the node's reserved block is spent, so it keeps
// working while the database is down until then. It returns exactly n SQNs
// or an error: ErrNotFound (no such subscriber), ErrUnavailable (database
// unreachable and the block spent — ask for fewer), ErrInvalid.
func (s *Store) NextSQNs(ctx context.Context, imsi topology.IMSI, region topology.RegionID, n int) ([]uint64, error) {
	slice, ok := s.cfg.INDSlices[region]
	if !ok {
		return nil, fmt.Errorf("registry: SQN for %s: region %q has no IND slice: %w", imsi, region, ErrInvalid)
	}
	if n < 1 || n > MaxSQNs {
		return nil, fmt.Errorf("registry: SQN for %s: n = %d, want 1-%d: %w", imsi, n, MaxSQNs, ErrInvalid)
	}
	if _, err := topology.ParseIMSI(string(imsi)); err != nil {
		return nil, fmt.Errorf("registry: SQN: %w: %w", ErrInvalid, err)
	}
	k := sqnKey{imsi, region}
	for {
		b := s.sqn.get(k)
		b.mu.Lock()
		if b.dead {
			b.mu.Unlock()
			continue
		}
		out, err := s.issue(ctx, b, k, slice, n)
		b.mu.Unlock()
		if err != nil {
			return nil, err
		}
		s.m.sqnIssued.Add(float64(n))
		return out, nil
	}
}

// issue takes n SEQs from b (locked), reserving a new block first if b
// holds fewer than n; nothing is consumed if that fails.
func (s *Store) issue(ctx context.Context, b *sqnBlock, k sqnKey, slice [2]uint8, n int) ([]uint64, error) {
	avail := uint64(0)
	if b.next <= b.last {
		avail = b.last - b.next + 1
	}
	var newFirst, newLast uint64
	if avail < uint64(n) {
		size := uint64(max(s.cfg.SQNBlock, n-int(avail)))
		last, err := s.reserve(ctx, k, size)
		if err != nil {
			return nil, err
		}
		newFirst, newLast = last-size+1, last
	}
	count := uint64(slice[1]) - uint64(slice[0]) + 1
	out := make([]uint64, 0, n)
	for len(out) < n {
		if b.next > b.last {
			b.next, b.last = newFirst, newLast
		}
		seq := b.next
		b.next++
		out = append(out, seq<<indBits|(uint64(slice[0])+seq%count))
	}
	return out, nil
}

// reserve advances the (imsi, region) counter by size and returns the new
// highest reserved SEQ.
func (s *Store) reserve(ctx context.Context, k sqnKey, size uint64) (uint64, error) {
	var last int64
	err := s.retry(ctx, "sqn", func() error {
		return s.w.QueryRowContext(ctx, `INSERT INTO sqn (imsi, region, seq) VALUES ($1, $2, $3)
  ON CONFLICT (imsi, region) DO UPDATE SET seq = sqn.seq + $3 RETURNING seq`,
			string(k.imsi), string(k.region), int64(size)).Scan(&last)
	})
	if err != nil {
		if isForeignKeyViolation(err) {
			return 0, fmt.Errorf("registry: SQN for %s: %w", k.imsi, ErrNotFound)
		}
		return 0, fmt.Errorf("registry: SQN for %s in %s: %w", k.imsi, k.region, err)
	}
	if last < 0 || uint64(last) > maxSEQ {
		return 0, fmt.Errorf("registry: SQN for %s in %s: SEQ space exhausted (TS 33.102 C.1.1): %w", k.imsi, k.region, ErrInvalid)
	}
	s.m.sqnBlocks.Inc()
	return uint64(last), nil
}

// Resync handles an AUTS (TS 33.102 §6.3.5, Annex C.3.4): sqnMS is the
// SQN_MS the USIM sent back; the region's counter is raised to at least
// SEQ_MS (max-merge, never lowered) and this node's reserved block is
// dropped, so the next SQN of the region has SEQ > SEQ_MS. Other nodes of
// the same region keep their blocks: their next vectors may be refused
// once more and resynchronise the same way.
func (s *Store) Resync(ctx context.Context, imsi topology.IMSI, region topology.RegionID, sqnMS uint64) error {
	if _, ok := s.cfg.INDSlices[region]; !ok {
		return fmt.Errorf("registry: resync %s: region %q has no IND slice: %w", imsi, region, ErrInvalid)
	}
	if _, err := topology.ParseIMSI(string(imsi)); err != nil {
		return fmt.Errorf("registry: resync: %w: %w", ErrInvalid, err)
	}
	if sqnMS >= 1<<48 {
		return fmt.Errorf("registry: resync %s: SQN_MS %#x is not 48 bits: %w", imsi, sqnMS, ErrInvalid)
	}
	seqMS := int64(sqnMS >> indBits)
	k := sqnKey{imsi, region}
	b := s.sqn.get(k)
	b.mu.Lock()
	defer b.mu.Unlock()
	var got int64
	err := s.retry(ctx, "resync", func() error {
		return s.w.QueryRowContext(ctx, `INSERT INTO sqn (imsi, region, seq) VALUES ($1, $2, $3)
  ON CONFLICT (imsi, region) DO UPDATE SET seq = CASE WHEN sqn.seq < $3 THEN $3 ELSE sqn.seq END RETURNING seq`,
			string(imsi), string(region), seqMS).Scan(&got)
	})
	if err != nil {
		if isForeignKeyViolation(err) {
			return fmt.Errorf("registry: resync %s: %w", imsi, ErrNotFound)
		}
		return fmt.Errorf("registry: resync %s in %s: %w", imsi, region, err)
	}
	b.next, b.last = 1, 0
	s.log.Info("registry: SQN resync", "imsi", string(imsi), "region", string(region), "seq_ms", seqMS, "seq", got)
	return nil
}
