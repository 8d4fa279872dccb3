package session

import (
	"context"
	"sync"
)

// DeleteResult counts the outcome of a network-initiated deletion (PGW
// Delete Bearer, GGSN Delete PDP Context).
type DeleteResult struct {
	// Selected sessions; each was removed from the table and the breakout.
	Selected int
	// Answered by the peer (any cause).
	Answered int
	// Failed: no response after the retransmissions, or ctx ended first.
	Failed int
}

// Delete is the network-initiated deletion shared by the PGW and the GGSN
// (drain and failover): every session of kind k that match accepts is
// signalled to its peer through signal, with at most concurrency requests in
// flight, and removed whether or not the peer answers. Sessions still
// waiting when ctx ends are removed without a request and count as failed,
// so that a drain always completes. It returns when all are done.
func (t *Table) Delete(ctx context.Context, k Kind, match func(Session) bool, concurrency int,
	signal func(context.Context, Session) error) DeleteResult {
	sel := t.Select(func(s *Session) bool { return s.Kind == k && (match == nil || match(*s)) })
	res := DeleteResult{Selected: len(sel)}
	var mu sync.Mutex // guards res
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(concurrency, 1))
	for _, s := range sel {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			_, _ = t.Remove(s.TEID)
			mu.Lock()
			res.Failed++
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := signal(ctx, s)
			_, _ = t.Remove(s.TEID) // may already be gone (the peer's delete crossed ours)
			mu.Lock()
			if err != nil {
				res.Failed++
			} else {
				res.Answered++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return res
}
