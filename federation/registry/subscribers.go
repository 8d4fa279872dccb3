package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/rendezvous-core/rendezvous/topology"
)

// validate checks sub against the configuration and fills defaults
// (Status active, APN PDN type ipv4v6). Errors wrap ErrInvalid and never
// quote key material.
func (s *Store) validate(sub *Subscriber) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("registry: subscriber %q: %s: %w", sub.IMSI, fmt.Sprintf(format, a...), ErrInvalid)
	}
	if _, err := topology.ParseIMSI(string(sub.IMSI)); err != nil {
		return fmt.Errorf("registry: %w: %w", ErrInvalid, err)
	}
	if len(sub.MSISDN) > 15 || !digits(sub.MSISDN) {
		return bad("MSISDN %q: want up to 15 digits", sub.MSISDN)
	}
	switch sub.Status {
	case "":
		sub.Status = StatusActive
	case StatusActive, StatusSuspended:
	default:
		return bad("status %q", sub.Status)
	}
	if _, ok := s.cfg.INDSlices[sub.HomeRegion]; !ok {
		return bad("unknown home region %q", sub.HomeRegion)
	}
	if len(sub.APNs) > 64 {
		return bad("%d APNs, at most 64", len(sub.APNs))
	}
	for i := range sub.APNs {
		a := &sub.APNs[i]
		if !validAPN(a.Name) {
			return bad("APN %d %q: want 1-100 characters of letters, digits, '-' and '.' (TS 23.003 §9.1)", i+1, a.Name)
		}
		switch a.PDNType {
		case "":
			a.PDNType = PDNIPv4v6
		case PDNIPv4, PDNIPv6, PDNIPv4v6:
		default:
			return bad("APN %q: PDN type %q", a.Name, a.PDNType)
		}
	}
	if p := sub.Policy.Pin; p != "" {
		if _, ok := s.cfg.INDSlices[p]; !ok {
			return bad("policy pins unknown region %q", p)
		}
	}
	for _, r := range sub.Policy.BarredRATs {
		switch r {
		case RATEUTRAN, RATUTRAN, RATGERAN, RATNBIoT, RATLTEM:
		default:
			return bad("policy bars unknown RAT %q", r)
		}
	}
	return nil
}

func validateAuth(imsi topology.IMSI, a AuthData) error {
	if a.Ki == [16]byte{} || a.OPc == [16]byte{} {
		return fmt.Errorf("registry: subscriber %q: Ki or OPc is all zero: %w", imsi, ErrInvalid)
	}
	return nil
}

// validAPN checks an APN Network Identifier: labels of letters, digits and
// hyphens separated by dots (TS 23.003 §9.1.1), 1-100 characters.
func validAPN(s string) bool {
	if len(s) == 0 || len(s) > 100 || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' && s[i-1] != '.') {
			return false
		}
	}
	return true
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// subscriberRow is a subscriber as stored.
type subscriberRow struct {
	msisdn         sql.NullString
	apns, policy   string
	ki, opc        []byte
	amf            int64
	kekID          string
	ambrUL, ambrDL int64
}

func (s *Store) encode(sub Subscriber, a AuthData) (subscriberRow, error) {
	apns := sub.APNs
	if apns == nil {
		apns = []APN{}
	}
	aj, err := json.Marshal(apns)
	if err != nil {
		return subscriberRow{}, fmt.Errorf("registry: encode APNs: %w", err)
	}
	pj, err := json.Marshal(sub.Policy)
	if err != nil {
		return subscriberRow{}, fmt.Errorf("registry: encode policy: %w", err)
	}
	row := subscriberRow{
		msisdn: sql.NullString{String: sub.MSISDN, Valid: sub.MSISDN != ""},
		apns:   string(aj), policy: string(pj),
		amf:    int64(a.AMF[0])<<8 | int64(a.AMF[1]),
		ambrUL: int64(sub.AMBRUplink), ambrDL: int64(sub.AMBRDownlink),
	}
	row.ki, row.opc, row.kekID, err = s.kr.sealAuth(sub.IMSI, a)
	return row, err
}

const insertSubscriberCols = `INSERT INTO subscribers
  (imsi, msisdn, status, home_region, apns, policy, ambr_ul, ambr_dl, ki, opc, amf, kek_id, rev, updated_us)
  VALUES `

const insertSubscriber = insertSubscriberCols + `($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`

// newRevision is the revision of a newly provisioned subscriber: the
// provisioning time in µs, so that revisions keep increasing across a
// delete and re-provision (a federation invalidation for the deleted
// subscriber never hides the new one).
func (s *Store) newRevision() int64 { return max(1, s.cfg.Clock().UnixMicro()) }

// Provision creates a subscriber with its keys. It returns ErrConflict if
// the IMSI (or the MSISDN) already exists, ErrInvalid for a bad profile.
// The stored revision is returned by Subscriber.
func (s *Store) Provision(ctx context.Context, sub Subscriber, auth AuthData) error {
	if err := s.validate(&sub); err != nil {
		return err
	}
	if err := validateAuth(sub.IMSI, auth); err != nil {
		return err
	}
	row, err := s.encode(sub, auth)
	if err != nil {
		return err
	}
	rev := s.newRevision()
	err = s.inTx(ctx, "provision", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, insertSubscriber, string(sub.IMSI), row.msisdn, string(sub.Status), string(sub.HomeRegion),
			row.apns, row.policy, row.ambrUL, row.ambrDL, row.ki, row.opc, row.amf, row.kekID, rev, s.cfg.Clock().UnixMicro())
		return err
	})
	if err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("registry: provision %s: IMSI or MSISDN exists: %w", sub.IMSI, ErrConflict)
		}
		return fmt.Errorf("registry: provision %s: %w", sub.IMSI, err)
	}
	s.changed(sub.IMSI, rev)
	s.log.Info("registry: provisioned", "imsi", string(sub.IMSI), "home", string(sub.HomeRegion), "rev", rev)
	return nil
}

// changed invalidates the local cache and tells the federation.
func (s *Store) changed(imsi topology.IMSI, rev int64) {
	s.cache.invalidate(imsi, rev)
	if s.cfg.OnChange != nil {
		s.cfg.OnChange(imsi, rev)
	}
}

// exists reports whether imsi is provisioned (inside tx).
func exists(ctx context.Context, tx *sql.Tx, imsi topology.IMSI) (bool, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM subscribers WHERE imsi = $1`, string(imsi)).Scan(&n)
	return n > 0, err
}

// Update replaces the profile of sub.IMSI (not its keys: SetAuthData) if its
// stored revision is still sub.Revision, and bumps the revision. A stale
// revision returns ErrConflict (re-read and try again); ErrNotFound if the
// subscriber does not exist.
func (s *Store) Update(ctx context.Context, sub Subscriber) error {
	if err := s.validate(&sub); err != nil {
		return err
	}
	row, err := s.encode(sub, AuthData{})
	if err != nil {
		return err
	}
	var rev int64
	err = s.inTx(ctx, "update", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `UPDATE subscribers SET msisdn = $2, status = $3, home_region = $4, apns = $5,
  policy = $6, ambr_ul = $7, ambr_dl = $8, rev = rev + 1, updated_us = $9
  WHERE imsi = $1 AND rev = $10 RETURNING rev`,
			string(sub.IMSI), row.msisdn, string(sub.Status), string(sub.HomeRegion), row.apns, row.policy,
			row.ambrUL, row.ambrDL, s.cfg.Clock().UnixMicro(), sub.Revision).Scan(&rev)
		if errors.Is(err, sql.ErrNoRows) {
			ok, err := exists(ctx, tx, sub.IMSI)
			if err != nil {
				return err
			}
			if ok {
				return fmt.Errorf("revision %d is stale: %w", sub.Revision, ErrConflict)
			}
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		// The serving row is homed with the subscriber (CockroachDB).
		_, err = tx.ExecContext(ctx, `UPDATE serving SET home_region = $2 WHERE imsi = $1 AND home_region <> $2`,
			string(sub.IMSI), string(sub.HomeRegion))
		return err
	})
	if err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("registry: update %s: MSISDN exists: %w", sub.IMSI, ErrConflict)
		}
		return fmt.Errorf("registry: update %s: %w", sub.IMSI, err)
	}
	s.changed(sub.IMSI, rev)
	s.log.Info("registry: updated", "imsi", string(sub.IMSI), "rev", rev)
	return nil
}

// Suspend sets the subscriber's status to suspended (bumping the revision).
func (s *Store) Suspend(ctx context.Context, imsi topology.IMSI) error {
	return s.setStatus(ctx, imsi, StatusSuspended)
}

// Resume sets the subscriber's status back to active.
func (s *Store) Resume(ctx context.Context, imsi topology.IMSI) error {
	return s.setStatus(ctx, imsi, StatusActive)
}

func (s *Store) setStatus(ctx context.Context, imsi topology.IMSI, st Status) error {
	var rev int64
	err := s.inTx(ctx, "status", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `UPDATE subscribers SET status = $2, rev = rev + 1, updated_us = $3 WHERE imsi = $1 RETURNING rev`,
			string(imsi), string(st), s.cfg.Clock().UnixMicro()).Scan(&rev)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("registry: set %s %s: %w", imsi, st, err)
	}
	s.changed(imsi, rev)
	s.log.Info("registry: status", "imsi", string(imsi), "status", string(st), "rev", rev)
	return nil
}

// Delete removes the subscriber with its SQN counters and serving row.
// Sessions and usage records stay (they are history).
func (s *Store) Delete(ctx context.Context, imsi topology.IMSI) error {
	var rev int64
	err := s.inTx(ctx, "delete", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `DELETE FROM subscribers WHERE imsi = $1 RETURNING rev`, string(imsi)).Scan(&rev)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("registry: delete %s: %w", imsi, err)
	}
	s.sqn.dropIMSI(imsi, s.cfg.INDSlices)
	rev = max(rev+1, s.newRevision())
	s.changed(imsi, rev)
	s.cache.drop(imsi)
	s.log.Info("registry: deleted", "imsi", string(imsi))
	return nil
}

// SetAuthData replaces the subscriber's keys (sealed under the primary KEK)
// and bumps the revision.
func (s *Store) SetAuthData(ctx context.Context, imsi topology.IMSI, auth AuthData) error {
	if err := validateAuth(imsi, auth); err != nil {
		return err
	}
	ki, opc, kek, err := s.kr.sealAuth(imsi, auth)
	if err != nil {
		return err
	}
	amf := int64(auth.AMF[0])<<8 | int64(auth.AMF[1])
	var rev int64
	err = s.inTx(ctx, "set_auth", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `UPDATE subscribers SET ki = $2, opc = $3, amf = $4, kek_id = $5, rev = rev + 1, updated_us = $6
  WHERE imsi = $1 RETURNING rev`, string(imsi), ki, opc, amf, kek, s.cfg.Clock().UnixMicro()).Scan(&rev)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("registry: set keys of %s: %w", imsi, err)
	}
	s.changed(imsi, rev)
	s.log.Info("registry: keys replaced", "imsi", string(imsi), "kek", kek, "rev", rev)
	return nil
}

// Rekey reseals up to limit subscribers whose keys are sealed under a KEK
// other than the primary (key rotation: put the new key first in the KEK
// file, keep the old one until Rekey returns 0). It returns how many rows it
// resealed. Revisions do not change: the keys themselves are the same.
func (s *Store) Rekey(ctx context.Context, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("registry: rekey: limit %d: %w", limit, ErrInvalid)
	}
	n := 0
	err := s.inTx(ctx, "rekey", func(tx *sql.Tx) error {
		n = 0
		rows, err := tx.QueryContext(ctx, `SELECT imsi, ki, opc, amf, kek_id FROM subscribers WHERE kek_id <> $1 ORDER BY imsi LIMIT $2`,
			s.kr.primary, limit)
		if err != nil {
			return err
		}
		type old struct {
			imsi    string
			ki, opc []byte
			amf     int64
			kek     string
		}
		var olds []old
		for rows.Next() {
			var o old
			if err := rows.Scan(&o.imsi, &o.ki, &o.opc, &o.amf, &o.kek); err != nil {
				rows.Close()
				return err
			}
			olds = append(olds, o)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, o := range olds {
			a, err := s.kr.openAuth(topology.IMSI(o.imsi), o.kek, o.ki, o.opc, o.amf)
			if err != nil {
				return err
			}
			ki, opc, kek, err := s.kr.sealAuth(topology.IMSI(o.imsi), a)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE subscribers SET ki = $2, opc = $3, kek_id = $4 WHERE imsi = $1`, o.imsi, ki, opc, kek); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("registry: rekey: %w", err)
	}
	return n, nil
}

// Subscriber returns the profile of imsi through the cache: a fresh cached
// entry (younger than CacheTTL) answers at once; otherwise the database
// does. If the database is unreachable, a cached entry of any age answers
// (Degraded reports it), and without one the error is ErrUnavailable.
// ErrNotFound if the subscriber does not exist.
func (s *Store) Subscriber(ctx context.Context, imsi topology.IMSI) (Subscriber, error) {
	sub, _, err := s.lookup(ctx, imsi)
	return sub, err
}

// AuthData returns the subscriber's decrypted keys, through the same cache
// as Subscriber (memory only). Never log them: AuthData redacts itself in
// fmt and slog, but not its fields.
func (s *Store) AuthData(ctx context.Context, imsi topology.IMSI) (AuthData, error) {
	_, a, err := s.lookup(ctx, imsi)
	return a, err
}

// Lookup returns the profile and the keys of imsi in one cache lookup (the
// HSS's Authentication-Information path: status check, then vectors).
func (s *Store) Lookup(ctx context.Context, imsi topology.IMSI) (Subscriber, AuthData, error) {
	return s.lookup(ctx, imsi)
}

func (s *Store) lookup(ctx context.Context, imsi topology.IMSI) (Subscriber, AuthData, error) {
	now := s.cfg.Clock()
	var staleSub Subscriber
	var staleAuth AuthData
	haveStale := false
	if s.cfg.CacheTTL > 0 {
		sub, a, fresh, ok := s.cache.get(imsi, now, s.cfg.CacheTTL)
		if ok && fresh {
			s.m.cacheHits.Inc()
			return cloneSubscriber(sub), a, nil
		}
		staleSub, staleAuth, haveStale = sub, a, ok
	}
	s.m.cacheMisses.Inc()
	sub, a, err := s.load(ctx, imsi)
	if err != nil {
		if errors.Is(err, ErrUnavailable) && haveStale {
			s.m.cacheStale.Inc()
			return cloneSubscriber(staleSub), staleAuth, nil
		}
		if haveStale && errors.Is(err, ErrNotFound) {
			s.cache.drop(imsi) // deleted by another node
		}
		return Subscriber{}, AuthData{}, err
	}
	if s.cfg.CacheTTL > 0 {
		s.cache.put(sub, a, now)
	}
	return cloneSubscriber(sub), a, nil
}

// cloneSubscriber copies the slices so callers cannot modify cached state.
func cloneSubscriber(sub Subscriber) Subscriber {
	sub.APNs = append([]APN(nil), sub.APNs...)
	p := &sub.Policy
	p.AllowedCountries = append([]string(nil), p.AllowedCountries...)
	p.BarredCountries = append([]string(nil), p.BarredCountries...)
	p.AllowedPLMNs = append([]string(nil), p.AllowedPLMNs...)
	p.BarredPLMNs = append([]string(nil), p.BarredPLMNs...)
	p.BarredRATs = append([]RAT(nil), p.BarredRATs...)
	return sub
}

// load reads a subscriber from the database.
func (s *Store) load(ctx context.Context, imsi topology.IMSI) (Subscriber, AuthData, error) {
	var (
		sub  Subscriber
		a    AuthData
		row  subscriberRow
		st   string
		home string
	)
	err := s.retry(ctx, "read", func() error {
		err := s.r.QueryRowContext(ctx, `SELECT msisdn, status, home_region, apns, policy, ambr_ul, ambr_dl, ki, opc, amf, kek_id, rev
  FROM subscribers WHERE imsi = $1`, string(imsi)).Scan(&row.msisdn, &st, &home, &row.apns, &row.policy,
			&row.ambrUL, &row.ambrDL, &row.ki, &row.opc, &row.amf, &row.kekID, &sub.Revision)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		return err
	})
	if err != nil {
		return Subscriber{}, AuthData{}, fmt.Errorf("registry: read %s: %w", imsi, err)
	}
	sub.IMSI, sub.MSISDN, sub.Status, sub.HomeRegion = imsi, row.msisdn.String, Status(st), topology.RegionID(home)
	sub.AMBRUplink, sub.AMBRDownlink = uint32(row.ambrUL), uint32(row.ambrDL)
	if err := json.Unmarshal([]byte(row.apns), &sub.APNs); err != nil {
		return Subscriber{}, AuthData{}, fmt.Errorf("registry: read %s: APNs: %w", imsi, err)
	}
	if err := json.Unmarshal([]byte(row.policy), &sub.Policy); err != nil {
		return Subscriber{}, AuthData{}, fmt.Errorf("registry: read %s: policy: %w", imsi, err)
	}
	a, err = s.kr.openAuth(imsi, row.kekID, row.ki, row.opc, row.amf)
	if err != nil {
		return Subscriber{}, AuthData{}, err
	}
	return sub, a, nil
}

// Invalidate drops the cached profile of imsi if it is older than revision
// (a federation broadcast after another node's change). Entries of that
// revision or newer stay.
func (s *Store) Invalidate(imsi topology.IMSI, revision int64) {
	s.cache.invalidate(imsi, revision)
}
