package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

// UpdateServing records where the subscriber is registered (HSS on ULR,
// TS 29.272 §5.2.1.1): a compare-and-set on the serving row. next.Generation
// is the generation the caller last saw (0: it saw no row). On success the
// row holds next with Generation+1, and prev is the row it replaced (zero
// Serving if there was none) so the HSS can send a CLR to the previous MME
// (§5.2.1.2). A stale generation returns ErrConflict (re-read with Serving
// and decide again); ErrNotFound if the subscriber does not exist.
func (s *Store) UpdateServing(ctx context.Context, next Serving) (prev Serving, err error) {
	if _, err := topology.ParseIMSI(string(next.IMSI)); err != nil {
		return Serving{}, fmt.Errorf("registry: serving: %w: %w", ErrInvalid, err)
	}
	if _, ok := s.cfg.INDSlices[next.Region]; !ok {
		return Serving{}, fmt.Errorf("registry: serving %s: unknown region %q: %w", next.IMSI, next.Region, ErrInvalid)
	}
	if next.Generation < 0 {
		return Serving{}, fmt.Errorf("registry: serving %s: generation %d: %w", next.IMSI, next.Generation, ErrInvalid)
	}
	now := s.cfg.Clock().UTC().Truncate(time.Microsecond)
	imsi := string(next.IMSI)
	plmn := next.VisitedPLMN.String()
	err = s.inTx(ctx, "serving", func(tx *sql.Tx) error {
		prev = Serving{}
		p, err := scanServing(tx.QueryRowContext(ctx, selectServing+` WHERE imsi = $1`, imsi))
		switch {
		case errors.Is(err, ErrNotFound):
			if next.Generation != 0 {
				return fmt.Errorf("no serving row, caller saw generation %d: %w", next.Generation, ErrConflict)
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO serving (imsi, home_region, region, mme_host, mme_realm, visited_plmn, generation, updated_us)
  SELECT imsi, home_region, $2, $3, $4, $5, 1, $6 FROM subscribers WHERE imsi = $1`,
				imsi, string(next.Region), next.MMEHost, next.MMERealm, plmn, now.UnixMicro())
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				if err != nil {
					return err
				}
				return ErrNotFound
			}
			return nil
		case err != nil:
			return err
		}
		if p.Generation != next.Generation {
			return fmt.Errorf("generation %d, caller saw %d: %w", p.Generation, next.Generation, ErrConflict)
		}
		res, err := tx.ExecContext(ctx, `UPDATE serving SET region = $2, mme_host = $3, mme_realm = $4, visited_plmn = $5,
  generation = generation + 1, updated_us = $6 WHERE imsi = $1 AND generation = $7`,
			imsi, string(next.Region), next.MMEHost, next.MMERealm, plmn, now.UnixMicro(), next.Generation)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			if err != nil {
				return err
			}
			return ErrConflict
		}
		prev = p
		return nil
	})
	if err != nil {
		return Serving{}, fmt.Errorf("registry: serving %s: %w", next.IMSI, err)
	}
	return prev, nil
}

const selectServing = `SELECT imsi, region, mme_host, mme_realm, visited_plmn, generation, updated_us FROM serving`

type scanner interface{ Scan(dest ...any) error }

func scanServing(row scanner) (Serving, error) {
	var sv Serving
	var imsi, region, plmn string
	var us int64
	err := row.Scan(&imsi, &region, &sv.MMEHost, &sv.MMERealm, &plmn, &sv.Generation, &us)
	if errors.Is(err, sql.ErrNoRows) {
		return Serving{}, ErrNotFound
	}
	if err != nil {
		return Serving{}, err
	}
	sv.IMSI, sv.Region = topology.IMSI(imsi), topology.RegionID(region)
	sv.VisitedPLMN = parsePLMN(plmn)
	sv.Updated = time.UnixMicro(us).UTC()
	return sv, nil
}

// parsePLMN splits "MCCMNC" (5 or 6 digits) as stored; anything else is the
// zero PLMN.
func parsePLMN(s string) topology.PLMN {
	if len(s) < 5 || len(s) > 6 || !digits(s) {
		return topology.PLMN{}
	}
	return topology.PLMN{MCC: topology.MCC(s[:3]), MNC: s[3:]}
}

// Serving returns the subscriber's serving row (strong read; never cached),
// ErrNotFound if there is none.
func (s *Store) Serving(ctx context.Context, imsi topology.IMSI) (Serving, error) {
	var sv Serving
	err := s.retry(ctx, "serving_read", func() error {
		var err error
		sv, err = scanServing(s.r.QueryRowContext(ctx, selectServing+` WHERE imsi = $1`, string(imsi)))
		return err
	})
	if err != nil {
		return Serving{}, fmt.Errorf("registry: serving %s: %w", imsi, err)
	}
	return sv, nil
}

// ServedIn lists up to limit (1–10000) serving rows of region with IMSI
// greater than after, in IMSI order: the re-homing scan after a region
// failure pages with after = the last IMSI of the previous page ("" first).
func (s *Store) ServedIn(ctx context.Context, region topology.RegionID, after topology.IMSI, limit int) ([]Serving, error) {
	if limit < 1 || limit > 10000 {
		return nil, fmt.Errorf("registry: served in %s: limit %d, want 1-10000: %w", region, limit, ErrInvalid)
	}
	var out []Serving
	err := s.retry(ctx, "served_in", func() error {
		out = out[:0]
		rows, err := s.r.QueryContext(ctx, selectServing+` WHERE region = $1 AND imsi > $2 ORDER BY imsi LIMIT $3`,
			string(region), string(after), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			sv, err := scanServing(rows)
			if err != nil {
				return err
			}
			out = append(out, sv)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("registry: served in %s: %w", region, err)
	}
	return out, nil
}
