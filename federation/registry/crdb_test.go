package registry

import (
	"strings"
	"testing"
)

// The CockroachDB overlay is generated, not stored; no CockroachDB runs
// here, so the statements themselves are the contract (notes/registry.md
// §2.3). They must never reach PostgreSQL or SQLite: TestMigrationsIdempotent
// opens both, and the statements below would fail there.
func TestCockroachOverlay(t *testing.T) {
	cfg, err := testConfig("postgres://x/y").validate()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`ALTER DATABASE "rdv" SET PRIMARY REGION "ap-northeast-1"`,
		`ALTER DATABASE "rdv" ADD REGION IF NOT EXISTS "us-west-2"`,
		`ALTER DATABASE "rdv" ADD REGION IF NOT EXISTS "eu-central-1"`,
		`ALTER DATABASE "rdv" ADD REGION IF NOT EXISTS "ap-southeast-2"`,
		`ALTER DATABASE "rdv" SURVIVE ZONE FAILURE`,
		`ALTER TABLE regions SET LOCALITY GLOBAL`,
		`ALTER TABLE imsi_ranges SET LOCALITY GLOBAL`,
		`ALTER TABLE subscribers ADD COLUMN IF NOT EXISTS crdb_region crdb_internal_region NOT VISIBLE NOT NULL AS (CASE home_region WHEN 'JP' THEN 'ap-northeast-1' WHEN 'US' THEN 'us-west-2' WHEN 'DE' THEN 'eu-central-1' WHEN 'AU' THEN 'ap-southeast-2' END) STORED`,
		`ALTER TABLE subscribers SET LOCALITY REGIONAL BY ROW AS crdb_region`,
		`ALTER TABLE serving ADD COLUMN IF NOT EXISTS crdb_region crdb_internal_region NOT VISIBLE NOT NULL AS (CASE home_region WHEN 'JP' THEN 'ap-northeast-1' WHEN 'US' THEN 'us-west-2' WHEN 'DE' THEN 'eu-central-1' WHEN 'AU' THEN 'ap-southeast-2' END) STORED`,
		`ALTER TABLE serving SET LOCALITY REGIONAL BY ROW AS crdb_region`,
		`ALTER TABLE sqn ADD COLUMN IF NOT EXISTS crdb_region crdb_internal_region NOT VISIBLE NOT NULL AS (CASE region WHEN 'JP' THEN 'ap-northeast-1' WHEN 'US' THEN 'us-west-2' WHEN 'DE' THEN 'eu-central-1' WHEN 'AU' THEN 'ap-southeast-2' END) STORED`,
		`ALTER TABLE sqn SET LOCALITY REGIONAL BY ROW AS crdb_region`,
		`ALTER TABLE sessions ADD COLUMN IF NOT EXISTS crdb_region crdb_internal_region NOT VISIBLE NOT NULL AS (CASE region WHEN 'JP' THEN 'ap-northeast-1' WHEN 'US' THEN 'us-west-2' WHEN 'DE' THEN 'eu-central-1' WHEN 'AU' THEN 'ap-southeast-2' END) STORED`,
		`ALTER TABLE sessions SET LOCALITY REGIONAL BY ROW AS crdb_region`,
		`ALTER TABLE usage SET LOCALITY REGIONAL BY ROW`,
	}
	got := crdbOverlay("rdv", cfg)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("overlay:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Region survival, a different primary, a hostile database name.
	cfg.CRDBSurviveRegion, cfg.CRDBPrimary = true, "DE"
	got = crdbOverlay(`we"ird`, cfg)
	if got[0] != `ALTER DATABASE "we""ird" SET PRIMARY REGION "eu-central-1"` ||
		got[1] != `ALTER DATABASE "we""ird" ADD REGION IF NOT EXISTS "ap-northeast-1"` ||
		got[4] != `ALTER DATABASE "we""ird" SURVIVE REGION FAILURE` {
		t.Fatalf("overlay with DE primary and region survival:\n%s", strings.Join(got[:5], "\n"))
	}

	for v, want := range map[string]bool{
		"CockroachDB CCL v24.3.1 (x86_64-pc-linux-gnu, built 2024/12/12 00:00:00, go1.22.8)": true,
		"PostgreSQL 15.18 (Debian 15.18-0+deb12u1) on x86_64-pc-linux-gnu":                   false,
	} {
		if isCockroach(v) != want {
			t.Errorf("isCockroach(%q) = %v", v, !want)
		}
	}
}

func TestMigrationFiles(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].version != 1 {
		t.Fatalf("migrations %+v", ms)
	}
	for _, m := range ms {
		for _, st := range m.stmts {
			for _, banned := range []string{"now()", "::", "FOR UPDATE", "UPSERT", "GREATEST", "gen_random_uuid", "LOCALITY"} {
				if strings.Contains(st, banned) {
					t.Errorf("migration %d uses non-portable %q: %s", m.version, banned, st)
				}
			}
		}
	}
}
