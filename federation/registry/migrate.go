package registry

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/rendezvous-core/rendezvous/topology"
)

// Schema migrations: versioned SQL files embedded in the binary
// (migrations/NNNN_name.sql), applied in order at Open, each exactly once and
// in its own transaction together with its schema_migrations row. None of
// the three dialects needs a migration library for this: the files are
// portable SQL, and the only dialect-specific DDL (the CockroachDB
// multi-region overlay) is generated, not stored.

//go:embed migrations/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	stmts   []string
}

// overlayVersion is the schema_migrations version of the CockroachDB
// multi-region overlay.
const overlayVersion = 1000

func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("registry: migrations: %w", err)
	}
	sort.Strings(names)
	var ms []migration
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "migrations/"), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || v >= overlayVersion {
			return nil, fmt.Errorf("registry: migration file %s: want NNNN_name.sql", n)
		}
		if len(ms) > 0 && ms[len(ms)-1].version >= v {
			return nil, fmt.Errorf("registry: migration %s: version %d not increasing", n, v)
		}
		b, err := migrationFS.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("registry: migration %s: %w", n, err)
		}
		ms = append(ms, migration{version: v, name: name, stmts: splitSQL(string(b))})
	}
	return ms, nil
}

// splitSQL splits a migration file on lines holding only ";" and drops
// comment-only pieces.
func splitSQL(src string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		var keep []string
		for _, l := range strings.Split(cur.String(), "\n") {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "--") {
				keep = append(keep, l)
			}
		}
		if len(keep) > 0 {
			out = append(out, strings.Join(keep, "\n"))
		}
		cur.Reset()
	}
	for _, l := range strings.Split(src, "\n") {
		if strings.TrimSpace(l) == ";" {
			flush()
			continue
		}
		cur.WriteString(l)
		cur.WriteByte('\n')
	}
	flush()
	return out
}

// migrate applies the embedded migrations, then (CockroachDB only) the
// multi-region overlay. Several nodes may open the same database at once:
// the schema_migrations row is inserted first in each migration's
// transaction, so a concurrent opener waits on it and then skips.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	create := `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_us BIGINT NOT NULL)`
	// Concurrent CREATE TABLE IF NOT EXISTS can fail with 23505 on
	// PostgreSQL's catalog; run it again.
	for attempt := 0; ; attempt++ {
		_, err = s.w.ExecContext(ctx, create)
		if err == nil || !isUniqueViolation(err) || attempt == 5 {
			break
		}
	}
	if err != nil {
		if unreachable(err) {
			return fmt.Errorf("registry: migrate: %w (%w)", ErrUnavailable, err)
		}
		return fmt.Errorf("registry: migrate: schema_migrations: %w", err)
	}
	if s.dialect == dialectCockroach {
		ov, err := s.overlay(ctx)
		if err != nil {
			return err
		}
		ms = append(ms, ov)
	}
	for _, m := range ms {
		if err := s.applyMigration(ctx, m); err != nil {
			return err
		}
	}
	return s.syncRegions(ctx)
}

func (s *Store) applyMigration(ctx context.Context, m migration) error {
	now := s.cfg.Clock().UnixMicro()
	claim := `INSERT INTO schema_migrations (version, name, applied_us) VALUES ($1, $2, $3) ON CONFLICT (version) DO NOTHING`
	if s.dialect == dialectCockroach {
		// CockroachDB runs schema changes asynchronously and restricts
		// them inside explicit transactions: every statement is written
		// to be idempotent (IF NOT EXISTS, SET LOCALITY) and runs on its
		// own; the version row is recorded last.
		var done int
		err := s.w.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, m.version).Scan(&done)
		if err != nil {
			return fmt.Errorf("registry: migration %d: %w", m.version, err)
		}
		if done > 0 {
			return nil
		}
		for i, st := range m.stmts {
			if err := s.retry(ctx, "migrate", func() error { _, err := s.w.ExecContext(ctx, st); return err }); err != nil {
				return fmt.Errorf("registry: migration %d_%s statement %d: %w", m.version, m.name, i+1, err)
			}
		}
		_, err = s.w.ExecContext(ctx, claim, m.version, m.name, now)
		if err != nil {
			return fmt.Errorf("registry: migration %d: %w", m.version, err)
		}
		return nil
	}
	applied := false
	err := s.inTx(ctx, "migrate", func(tx *sql.Tx) error {
		applied = false
		res, err := tx.ExecContext(ctx, claim, m.version, m.name, now)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // already applied
		}
		for i, st := range m.stmts {
			if _, err := tx.ExecContext(ctx, st); err != nil {
				return fmt.Errorf("statement %d: %w", i+1, err)
			}
		}
		applied = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("registry: migration %d_%s: %w", m.version, m.name, err)
	}
	if applied {
		s.log.Info("registry: applied migration", "version", m.version, "name", m.name, "dialect", s.dialect.String())
	}
	return nil
}

// syncRegions inserts the configured regions that the regions table lacks
// (their IND slices), never rewriting existing rows: on CockroachDB regions
// is GLOBAL and every write to it pays a commit wait.
func (s *Store) syncRegions(ctx context.Context) error {
	var missing []topology.RegionID
	for r := range s.cfg.INDSlices {
		var n int
		if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM regions WHERE region = $1`, string(r)).Scan(&n); err != nil {
			return fmt.Errorf("registry: regions: %w", err)
		}
		if n == 0 {
			missing = append(missing, r)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return s.inTx(ctx, "regions", func(tx *sql.Tx) error {
		for _, r := range missing {
			sl := s.cfg.INDSlices[r]
			if _, err := tx.ExecContext(ctx, `INSERT INTO regions (region, ind_first, ind_last, updated_us) VALUES ($1, $2, $3, $4) ON CONFLICT (region) DO NOTHING`,
				string(r), int(sl[0]), int(sl[1]), s.cfg.Clock().UnixMicro()); err != nil {
				return fmt.Errorf("registry: regions: insert %s: %w", r, err)
			}
		}
		return nil
	})
}
