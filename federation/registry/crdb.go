package registry

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/rendezvous-core/rendezvous/topology"
)

// The CockroachDB multi-region overlay (notes/registry.md §0.4, §2.3). It is
// generated from the configuration and applied only when SELECT version()
// says CockroachDB; PostgreSQL and SQLite never see it.
//
//   - regions, imsi_ranges: GLOBAL (strong local reads everywhere, rare
//     writes that pay a commit wait).
//   - subscribers, serving: REGIONAL BY ROW homed in the subscriber's home
//     region (computed crdb_region column), so the Update-Location CAS
//     linearises at home.
//   - sqn: REGIONAL BY ROW homed in the allocating region (a PK column), so
//     every SQN allocation is a local write (TS 33.102 Annex C slices).
//   - sessions: REGIONAL BY ROW homed in the anchoring region.
//   - usage: REGIONAL BY ROW in the writer's gateway region (default).
//
// Not executed against a real cluster here (no CockroachDB available); the
// generated statements are checked by TestCockroachOverlay.

// isCockroach reports whether a version() string is CockroachDB's.
func isCockroach(version string) bool { return strings.HasPrefix(version, "CockroachDB") }

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteLiteral(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }

// regionOrder lists the configured regions: JP, US, DE, AU first, then any
// others sorted.
func regionOrder(m map[topology.RegionID][2]uint8) []topology.RegionID {
	rank := map[topology.RegionID]int{topology.JP: 0, topology.US: 1, topology.DE: 2, topology.AU: 3}
	var rs []topology.RegionID
	for r := range m {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool {
		ri, iok := rank[rs[i]]
		rj, jok := rank[rs[j]]
		switch {
		case iok && jok:
			return ri < rj
		case iok != jok:
			return iok
		}
		return rs[i] < rs[j]
	})
	return rs
}

// crdbOverlay returns the overlay statements for database db.
func crdbOverlay(db string, cfg Config) []string {
	d := quoteIdent(db)
	regions := regionOrder(cfg.INDSlices)
	stmts := []string{
		fmt.Sprintf("ALTER DATABASE %s SET PRIMARY REGION %s", d, quoteIdent(cfg.CRDBRegions[cfg.CRDBPrimary])),
	}
	for _, r := range regions {
		if r != cfg.CRDBPrimary {
			stmts = append(stmts, fmt.Sprintf("ALTER DATABASE %s ADD REGION IF NOT EXISTS %s", d, quoteIdent(cfg.CRDBRegions[r])))
		}
	}
	if cfg.CRDBSurviveRegion {
		stmts = append(stmts, fmt.Sprintf("ALTER DATABASE %s SURVIVE REGION FAILURE", d))
	} else {
		stmts = append(stmts, fmt.Sprintf("ALTER DATABASE %s SURVIVE ZONE FAILURE", d))
	}
	stmts = append(stmts,
		"ALTER TABLE regions SET LOCALITY GLOBAL",
		"ALTER TABLE imsi_ranges SET LOCALITY GLOBAL",
	)
	caseOf := func(col string) string {
		var b strings.Builder
		b.WriteString("CASE ")
		b.WriteString(col)
		for _, r := range regions {
			fmt.Fprintf(&b, " WHEN %s THEN %s", quoteLiteral(string(r)), quoteLiteral(cfg.CRDBRegions[r]))
		}
		b.WriteString(" END")
		return b.String()
	}
	for _, t := range []struct{ table, col string }{
		{"subscribers", "home_region"},
		{"serving", "home_region"},
		{"sqn", "region"},
		{"sessions", "region"},
	} {
		stmts = append(stmts,
			fmt.Sprintf("ALTER TABLE %s ADD COLUMN IF NOT EXISTS crdb_region crdb_internal_region NOT VISIBLE NOT NULL AS (%s) STORED", t.table, caseOf(t.col)),
			fmt.Sprintf("ALTER TABLE %s SET LOCALITY REGIONAL BY ROW AS crdb_region", t.table),
		)
	}
	stmts = append(stmts, "ALTER TABLE usage SET LOCALITY REGIONAL BY ROW")
	return stmts
}

// overlay builds the overlay migration for the connected database.
func (s *Store) overlay(ctx context.Context) (migration, error) {
	for r := range s.cfg.INDSlices {
		if s.cfg.CRDBRegions[r] == "" {
			return migration{}, fmt.Errorf("registry: overlay: CRDBRegions has no cluster region for %s: %w", r, ErrInvalid)
		}
	}
	if s.cfg.CRDBRegions[s.cfg.CRDBPrimary] == "" {
		return migration{}, fmt.Errorf("registry: overlay: CRDBPrimary %q has no cluster region: %w", s.cfg.CRDBPrimary, ErrInvalid)
	}
	var db string
	if err := s.w.QueryRowContext(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		return migration{}, fmt.Errorf("registry: overlay: current_database: %w", err)
	}
	return migration{version: overlayVersion, name: "crdb_multiregion", stmts: crdbOverlay(db, s.cfg)}, nil
}
