package registry

import (
	"context"
	"database/sql"
	"fmt"
	"math"
)

// RecordUsage stores one usage record. It is idempotent on (Session,
// Sequence): recording the same record again is a no-op; a different record
// under the same key returns ErrConflict.
func (s *Store) RecordUsage(ctx context.Context, u Usage) error {
	if u.Session == "" || u.Sequence < 0 {
		return fmt.Errorf("registry: usage: session %q sequence %d: %w", u.Session, u.Sequence, ErrInvalid)
	}
	if u.BytesUp > math.MaxInt64 || u.BytesDown > math.MaxInt64 {
		return fmt.Errorf("registry: usage %s/%d: byte count exceeds 2^63-1: %w", u.Session, u.Sequence, ErrInvalid)
	}
	from, to := u.From.UnixMicro(), u.To.UnixMicro()
	err := s.inTx(ctx, "usage", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO usage (session, seq, bytes_up, bytes_down, from_us, to_us)
  VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session, seq) DO NOTHING`,
			u.Session, u.Sequence, int64(u.BytesUp), int64(u.BytesDown), from, to)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		var up, down, f, t int64
		if err := tx.QueryRowContext(ctx, `SELECT bytes_up, bytes_down, from_us, to_us FROM usage WHERE session = $1 AND seq = $2`,
			u.Session, u.Sequence).Scan(&up, &down, &f, &t); err != nil {
			return err
		}
		if up != int64(u.BytesUp) || down != int64(u.BytesDown) || f != from || t != to {
			return fmt.Errorf("a different record has this key: %w", ErrConflict)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("registry: usage %s/%d: %w", u.Session, u.Sequence, err)
	}
	return nil
}
