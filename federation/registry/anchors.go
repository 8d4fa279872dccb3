package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// AnchorWriter writes session anchors off the hot path: Enqueue puts an
// anchor on a bounded queue and never blocks (a full queue drops it and
// counts rendezvous_registry_anchors_dropped_total); a goroutine owned by
// the Store writes them in batches (one transaction per batch, upsert on
// the session id, so an anchor enqueued again with Ended set closes it).
// A batch that fails stays pending and is retried on the next flush.
type AnchorWriter struct {
	s     *Store
	q     chan SessionAnchor
	flush chan chan error // Flush requests

	closeErr error // set by run before it returns
}

func newAnchorWriter(s *Store) *AnchorWriter {
	return &AnchorWriter{s: s, q: make(chan SessionAnchor, s.cfg.AnchorQueue), flush: make(chan chan error)}
}

// Anchors returns the Store's session-anchor writer.
func (s *Store) Anchors() *AnchorWriter { return s.anchors }

// Enqueue queues a for writing. It never blocks: false means a was dropped
// (queue full, Store closed, or no ID / unknown region).
func (w *AnchorWriter) Enqueue(a SessionAnchor) bool {
	if _, ok := w.s.cfg.INDSlices[a.Region]; !ok || a.ID == "" {
		w.s.m.anchorsDropped.Inc()
		return false
	}
	select {
	case <-w.s.stop:
		w.s.m.anchorsDropped.Inc()
		return false
	default:
	}
	select {
	case w.q <- a:
		return true
	default:
		w.s.m.anchorsDropped.Inc()
		return false
	}
}

// Flush writes everything enqueued before the call and returns the write's
// error (tests, graceful drains).
func (w *AnchorWriter) Flush(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case w.flush <- done:
	case <-w.s.stop:
		return fmt.Errorf("registry: flush anchors: %w", errClosed)
	case <-ctx.Done():
		return fmt.Errorf("registry: flush anchors: %w", ctx.Err())
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("registry: flush anchors: %w", ctx.Err())
	}
}

// Pending returns how many anchors are queued.
func (w *AnchorWriter) Pending() int { return len(w.q) }

func (w *AnchorWriter) run() {
	defer w.s.wg.Done()
	t := time.NewTicker(w.s.cfg.AnchorFlush)
	defer t.Stop()
	batch := make([]SessionAnchor, 0, w.s.cfg.AnchorBatch)
	fill := func() {
		for len(batch) < cap(batch) {
			select {
			case a := <-w.q:
				batch = append(batch, a)
			default:
				return
			}
		}
	}
	// write writes batch (topped up from the queue) until the queue is
	// empty. A batch the database refuses (not: cannot be reached) is
	// dropped and counted; otherwise it stays for the next attempt.
	write := func(ctx context.Context) error {
		for {
			fill()
			if len(batch) == 0 {
				return nil
			}
			if err := w.write(ctx, batch); err != nil {
				w.s.m.anchorBatchesFailed.Inc()
				if !errors.Is(err, ErrUnavailable) {
					w.s.m.anchorsDropped.Add(float64(len(batch)))
					clear(batch)
					batch = batch[:0]
				}
				return err
			}
			w.s.m.anchorsWritten.Add(float64(len(batch)))
			clear(batch)
			batch = batch[:0]
		}
	}
	warn := func(err error) {
		if err != nil {
			w.s.log.Warn("registry: session anchors not written", "pending", len(batch)+len(w.q), "err", err)
		}
	}
	for {
		in := w.q
		if len(batch) == cap(batch) {
			in = nil // full and failing: wait for the tick
		}
		select {
		case <-w.s.stop:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := write(ctx)
			cancel()
			if err != nil {
				w.closeErr = fmt.Errorf("registry: close: %d session anchors not written: %w", len(batch)+len(w.q), err)
			}
			return
		case done := <-w.flush:
			done <- write(context.Background())
		case <-t.C:
			warn(write(context.Background()))
		case a := <-in:
			batch = append(batch, a)
			if len(batch) == cap(batch) {
				warn(write(context.Background()))
			}
		}
	}
}

func (w *AnchorWriter) write(ctx context.Context, batch []SessionAnchor) error {
	return w.s.inTx(ctx, "anchors", func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO sessions (id, imsi, region, node, apn, ue, teid_c_local, teid_u_local,
  teid_c_peer, teid_u_peer, started_us, ended_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
  ON CONFLICT (id) DO UPDATE SET imsi = excluded.imsi, region = excluded.region, node = excluded.node, apn = excluded.apn,
  ue = excluded.ue, teid_c_local = excluded.teid_c_local, teid_u_local = excluded.teid_u_local,
  teid_c_peer = excluded.teid_c_peer, teid_u_peer = excluded.teid_u_peer, started_us = excluded.started_us,
  ended_us = excluded.ended_us`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, a := range batch {
			ue := ""
			if a.UE.IsValid() {
				ue = a.UE.String()
			}
			var ended int64
			if !a.Ended.IsZero() {
				ended = a.Ended.UnixMicro()
			}
			if _, err := st.ExecContext(ctx, a.ID, string(a.IMSI), string(a.Region), a.Node, a.APN, ue,
				int64(a.LocalTEIDControl), int64(a.LocalTEIDUser), int64(a.PeerTEIDControl), int64(a.PeerTEIDUser),
				a.Started.UnixMicro(), ended); err != nil {
				return fmt.Errorf("session %q: %w", a.ID, err)
			}
		}
		return nil
	})
}
