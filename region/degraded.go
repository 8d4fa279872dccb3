package region

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/topology"
)

// maxJournal bounds the serving rows a node remembers and the writes it
// holds while the registry is unreachable.
const maxJournal = 100_000

// servingJournal lets the HSS keep attaching cached subscribers while the
// registry is unreachable (DESIGN.md §2, issue "registry outage"): the
// profile and the SQN block come from the registry's own cache; the serving
// row — the one write of an attach — is remembered here and written when
// the database is back. Reads fall back to the last row this node saw.
//
// While the registry is down the compare-and-set cannot run; the replay is
// last-writer-wins from this node's point of view, which is the newest
// attach it served. A concurrent attach of the same device at another node
// is resolved when both replay: the later replay wins and the loser's MME
// will get no CLR — a bounded, logged inconsistency traded for attaching at
// all during an outage.
type servingJournal struct {
	*registry.Store
	log *slog.Logger

	mu      sync.Mutex // guards following fields
	last    map[topology.IMSI]registry.Serving
	pending map[topology.IMSI]registry.Serving

	stop chan struct{}
	wg   sync.WaitGroup
}

func newServingJournal(store *registry.Store, log *slog.Logger) *servingJournal {
	j := &servingJournal{
		Store:   store,
		log:     log,
		last:    map[topology.IMSI]registry.Serving{},
		pending: map[topology.IMSI]registry.Serving{},
		stop:    make(chan struct{}),
	}
	j.wg.Add(1)
	go j.replay()
	return j
}

func (j *servingJournal) remember(s registry.Serving) {
	if len(j.last) >= maxJournal {
		for k := range j.last { // evict an arbitrary entry: bounded memory
			delete(j.last, k)
			break
		}
	}
	j.last[s.IMSI] = s
}

// Serving reads the row; with the database unreachable, the last row this
// node saw (or none).
func (j *servingJournal) Serving(ctx context.Context, imsi topology.IMSI) (registry.Serving, error) {
	s, err := j.Store.Serving(ctx, imsi)
	down := j.unavailable(ctx, err) // before locking: it may ping
	j.mu.Lock()
	defer j.mu.Unlock()
	switch {
	case err == nil:
		if p, ok := j.pending[imsi]; ok {
			return p, nil // our newer row is not written yet
		}
		j.remember(s)
		return s, nil
	case down:
		if s, ok := j.last[imsi]; ok {
			return s, nil
		}
		return registry.Serving{}, registry.ErrNotFound
	}
	return s, err
}

// UpdateServing writes by compare-and-set; with the database unreachable
// and the subscriber cached, it journals the row and succeeds.
func (j *servingJournal) UpdateServing(ctx context.Context, next registry.Serving) (registry.Serving, error) {
	prev, err := j.Store.UpdateServing(ctx, next)
	down := j.unavailable(ctx, err) // before locking: it may ping
	j.mu.Lock()
	defer j.mu.Unlock()
	if err == nil {
		next.Generation++
		j.remember(next)
		return prev, nil
	}
	if !down || len(j.pending) >= maxJournal {
		return prev, err
	}
	prev = j.last[next.IMSI]
	next.Generation++
	j.pending[next.IMSI] = next
	j.remember(next)
	return prev, nil
}

// replay writes journaled rows once the database answers again.
func (j *servingJournal) replay() {
	defer j.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
		}
		j.mu.Lock()
		batch := make([]registry.Serving, 0, len(j.pending))
		for _, s := range j.pending {
			batch = append(batch, s)
		}
		j.mu.Unlock()
		for _, s := range batch {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := j.write(ctx, s)
			cancel()
			if j.unavailable(context.Background(), err) {
				break // still down: try the rest next tick
			}
			j.mu.Lock()
			if p, ok := j.pending[s.IMSI]; ok && p.Updated.Equal(s.Updated) {
				delete(j.pending, s.IMSI)
			}
			j.mu.Unlock()
			if err != nil {
				j.log.Warn("journaled serving row could not be written", "imsi", s.IMSI, "err", err)
			}
		}
	}
}

func (j *servingJournal) write(ctx context.Context, s registry.Serving) error {
	for attempt := 0; attempt < 5; attempt++ {
		cur, err := j.Store.Serving(ctx, s.IMSI)
		switch {
		case err == nil:
			s.Generation = cur.Generation
		case errors.Is(err, registry.ErrNotFound):
			s.Generation = 0
		default:
			return err
		}
		if _, err = j.Store.UpdateServing(ctx, s); !errors.Is(err, registry.ErrConflict) {
			return err
		}
	}
	return registry.ErrConflict
}

// unavailable reports whether err means the database cannot be reached:
// ErrUnavailable, or an unclassified error (a connection cut mid-query)
// while a ping fails too. Verdicts (not found, conflict, invalid) never are.
func (j *servingJournal) unavailable(ctx context.Context, err error) bool {
	switch {
	case err == nil, errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrConflict), errors.Is(err, registry.ErrInvalid):
		return false
	case errors.Is(err, registry.ErrUnavailable):
		return true
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 500*time.Millisecond)
	defer cancel()
	return j.Store.Ping(ctx) != nil
}

// Pending returns how many serving rows wait for the database.
func (j *servingJournal) Pending() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.pending)
}

// Close stops the replay loop. Rows still pending are lost with the
// process, as any in-memory state would be; they are logged.
func (j *servingJournal) Close() error {
	close(j.stop)
	j.wg.Wait()
	if n := j.Pending(); n > 0 {
		j.log.Warn("serving rows not written before stop", "count", n)
	}
	return nil
}
